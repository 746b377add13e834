"""Bulk writes for pulls, from plain dicts of field values (no model instances: at thousands of rows
per batch their construction is a noticeable share of a pull's CPU).

On PostgreSQL rows go in with COPY into a temporary table and one INSERT … SELECT … ON CONFLICT: several
times faster than multi-row INSERTs, whose parameters psycopg quotes in Python one by one. Other databases
use Django's bulk_create with the same semantics. A JSON value already serialized (``JsonText``) is copied
as it is, not serialized again; a batch's keys are looked up with one array parameter (``AnyOf``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.core.exceptions import EmptyResultSet
from django.db import connection, models
from django.db.models import BooleanField, F, Func, Q, QuerySet


class JsonText(str):
    """A JSON document already serialized (e.g. for its payload hash): COPY sends this text to the json(b)
    column as it is instead of serializing the object a second time."""


class AnyOf(Func):
    """``column = ANY(%s)`` on PostgreSQL: the values go as one array parameter, not one parameter each (a
    batch of 2,000 keys as ``IN (%s, …)`` costs Django and psycopg ~2,000 adaptations and the server a
    2,000-item list to plan); ``IN (…)`` elsewhere. Usable in ``filter()`` and ``Q``."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, column: str, values):
        super().__init__(F(column))
        self.values = list(values)

    def as_sql(self, compiler, connection, **extra):
        if not self.values:
            raise EmptyResultSet
        lhs, params = compiler.compile(self.get_source_expressions()[0])
        return f"{lhs} IN ({', '.join(['%s'] * len(self.values))})", (*params, *self.values)

    def as_postgresql(self, compiler, connection, **extra):
        if not self.values:
            raise EmptyResultSet
        column = self.get_source_expressions()[0]
        lhs, params = compiler.compile(column)
        return f"{lhs} = ANY(%s::{column.output_field.cast_db_type(connection)}[])", (*params, self.values)


def among(column: str, values: list | QuerySet) -> Q:
    """``column`` in ``values``: a list (one array parameter) or a subquery."""
    return Q(AnyOf(column, values)) if isinstance(values, list) else Q(**{f"{column}__in": values})


def _fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def _copy_into_temp(cur, model: type[models.Model], fields: list[models.Field], rows: Sequence[dict]) -> str:
    from psycopg.types.json import Jsonb

    table = model._meta.db_table
    temp = f"_bulk_{table}"
    cols = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {temp} AS SELECT {cols} FROM {table} WITH NO DATA")
    cur.execute(f"TRUNCATE {temp}")
    plan = [(f.attname, isinstance(f, models.JSONField)) for f in fields]
    with cur.cursor.copy(f"COPY {temp} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[name] if not is_json or isinstance(row[name], JsonText) else Jsonb(row[name])
                            for name, is_json in plan])
    return temp


def _instances(model: type[models.Model], rows: Sequence[dict]) -> list[models.Model]:
    json_fields = [f.attname for f in _fields(model) if isinstance(f, models.JSONField)]
    objs = []
    for row in rows:
        if any(isinstance(row.get(name), JsonText) for name in json_fields):
            row = {**row, **{n: json.loads(row[n]) for n in json_fields if isinstance(row.get(n), JsonText)}}
        objs.append(model(**row))
    return objs


def upsert(model: type[models.Model], rows: Sequence[dict], *, unique_field: str, update_fields: list[str],
           returning: str | None = None, inserted: bool = False) -> dict | None:
    """INSERT rows (dicts with every non-pk field) or, when ``unique_field`` exists, UPDATE
    ``update_fields``. Call inside a transaction. With ``returning`` (a field name), the written rows'
    ``{unique_field value: returning value}`` (on PostgreSQL from the INSERT itself: no second query); with
    ``inserted`` too, ``{unique_field value: (returning value, whether the row is new)}`` — the database's
    word, so it holds even if another transaction wrote the row after the caller looked (PostgreSQL only:
    elsewhere the flag is None)."""
    if not rows:
        return {} if returning else None
    if connection.vendor != "postgresql":
        model.objects.bulk_create(_instances(model, rows), update_conflicts=True,
                                  unique_fields=[unique_field], update_fields=update_fields)
        if returning is None:
            return None
        keys = [row[unique_field] for row in rows]
        found = dict(model.objects.filter(among(unique_field, keys)).values_list(unique_field, returning))
        return {k: (v, None) for k, v in found.items()} if inserted else found
    fields = _fields(model)
    qn = connection.ops.quote_name
    cols = ", ".join(qn(f.column) for f in fields)
    by_name = {f.name: f for f in fields}
    updates = ", ".join(f"{qn(by_name[n].column)} = EXCLUDED.{qn(by_name[n].column)}" for n in update_fields)
    unique_column = qn(model._meta.get_field(unique_field).column)
    tail = f" RETURNING {unique_column}, {qn(model._meta.get_field(returning).column)}" if returning else ""
    if returning and inserted:
        tail += ", xmax = 0"  # the row version was created by this INSERT, not by its ON CONFLICT UPDATE
    with connection.cursor() as cur:
        temp = _copy_into_temp(cur, model, fields, rows)
        cur.execute(f"INSERT INTO {model._meta.db_table} ({cols}) SELECT {cols} FROM {temp} "
                    f"ON CONFLICT ({unique_column}) DO UPDATE SET {updates}{tail}")
        if not returning:
            return None
        if inserted:
            return {key: (value, new) for key, value, new in cur.fetchall()}
        return dict(cur.fetchall())


def insert_ignoring_conflicts(model: type[models.Model], rows: Sequence[dict]) -> None:
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(_instances(model, rows), ignore_conflicts=True)
        return
    fields = _fields(model)
    cols = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cur:
        temp = _copy_into_temp(cur, model, fields, rows)
        cur.execute(f"INSERT INTO {model._meta.db_table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT DO NOTHING")
