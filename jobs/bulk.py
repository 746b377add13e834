"""Bulk writes for pulls, from plain dicts of field values (no model instances: at thousands of rows
per batch their construction is a noticeable share of a pull's CPU).

On PostgreSQL rows go in with COPY into a temporary table and one INSERT … SELECT … ON CONFLICT: several
times faster than multi-row INSERTs, whose parameters psycopg quotes in Python one by one. Other databases
use Django's bulk_create with the same semantics."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, models


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
            copy.write_row([Jsonb(row[name]) if is_json else row[name] for name, is_json in plan])
    return temp


def upsert(model: type[models.Model], rows: Sequence[dict], *, unique_field: str, update_fields: list[str]) -> None:
    """INSERT rows (dicts with every non-pk field) or, when ``unique_field`` exists, UPDATE
    ``update_fields``. Call inside a transaction."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], update_conflicts=True,
                                  unique_fields=[unique_field], update_fields=update_fields)
        return
    fields = _fields(model)
    qn = connection.ops.quote_name
    cols = ", ".join(qn(f.column) for f in fields)
    by_name = {f.name: f for f in fields}
    updates = ", ".join(f"{qn(by_name[n].column)} = EXCLUDED.{qn(by_name[n].column)}" for n in update_fields)
    with connection.cursor() as cur:
        temp = _copy_into_temp(cur, model, fields, rows)
        cur.execute(f"INSERT INTO {model._meta.db_table} ({cols}) SELECT {cols} FROM {temp} "
                    f"ON CONFLICT ({qn(by_name[unique_field].column)}) DO UPDATE SET {updates}")


def insert_ignoring_conflicts(model: type[models.Model], rows: Sequence[dict]) -> None:
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], ignore_conflicts=True)
        return
    fields = _fields(model)
    cols = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cur:
        temp = _copy_into_temp(cur, model, fields, rows)
        cur.execute(f"INSERT INTO {model._meta.db_table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT DO NOTHING")
