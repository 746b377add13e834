"""What every pulled record shares, for any app's upsert: the abstract model, the readers that turn upstream
values into fields (raising MalformedRow with the reason staff see), and one set-based batch upsert.

``RecordUpsert`` (or ``upsert_records``) makes one SELECT to classify the batch, one upsert for new and changed
rows (returning their ids) and, when the record has a child table (customers' phones, say), one DELETE + one
INSERT to refresh the children of the rows it wrote. Unchanged rows (same payload hash) are neither parsed nor
written. Each payload is serialized once: that text gives its hash and is what COPY sends to the ``raw`` column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

import orjson
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import bulk
from .pulls import BatchResult


class UpstreamRecord(models.Model):
    """Fields every pulled record has: the raw payload, its hash (unchanged rows are skipped), our times."""

    raw = models.JSONField(verbose_name=_("raw"), default=dict)
    payload_hash = models.CharField(verbose_name=_("payload hash"), max_length=32)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), default=timezone.now, editable=False)

    class Meta:
        abstract = True


class MalformedRow(ValueError):
    pass


def canonical_json(raw) -> str:
    """Sorted keys, no spaces, UTF-8 as is: the text a payload is hashed and stored as. orjson writes the same
    text as the standard library (checked over a pull's customers) ~3.5× faster; what it refuses (an integer
    past 64 bits, a non-string key) goes through the standard library."""
    try:
        return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - change detection, not security


def payload_hash(raw: dict) -> str:
    return _digest(canonical_json(raw))


# --- readers: upstream value → field value ------------------------------------------------------------
def text(value, limit: int) -> str:
    if value is None:
        return ""
    return str(value).strip()[:limit]


def integer(value, what: str, *, required=False) -> int | None:
    """An int from an int, a float-free decimal string or a number sent as a string."""
    if value in (None, ""):
        if required:
            raise MalformedRow(f"{what} is missing")
        return None
    if isinstance(value, bool):
        raise MalformedRow(f"{what} is not a number: {value!r}")
    try:
        return int(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        raise MalformedRow(f"{what} is not a number: {str(value)[:40]!r}") from None


def decimal(value, what: str, *, default: str = "0") -> Decimal:
    try:
        return Decimal(str(value if value not in (None, "") else default))
    except InvalidOperation:
        raise MalformedRow(f"{what} is not a number: {str(value)[:40]!r}") from None


def unix_time(value, what: str) -> datetime | None:
    seconds = integer(value, what)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedRow(f"{what} is out of range: {seconds}") from None


def ymd_date(value, what: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MalformedRow(f"{what} is not a Y-m-d date: {str(value)[:40]!r}") from None


def iso_time(value, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedRow(f"{what} is not an ISO 8601 time: {str(value)[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def int_key(value) -> int | None:
    """An upstream id as an int, or None when it is missing or not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


# --- the batch upsert -----------------------------------------------------------------------------------
Parser = Callable[[dict], tuple[dict, list[dict]]]  # raw → (fields, child rows without their parent key)
KeyOf = Callable[[dict], object]


@dataclass(frozen=True)
class ChildTable:
    """Rows owned by each record (e.g. its normalized phones), replaced whenever the record is written."""

    model: type[models.Model]
    parent_field: str  # the child's FK column to the record, e.g. "customer_id"


@dataclass
class PreparedBatch:
    """A batch classified and parsed (``RecordUpsert.prepare``), ready to be written."""

    result: BatchResult
    known: dict  # key → payload hash of the rows stored when the batch was prepared
    to_write: list[dict]
    child_rows: dict  # key → its child rows (empty: the record has none now)


@dataclass(frozen=True)
class RecordUpsert:
    """The set-based upsert of one record type: ``upsert(rows)``, i.e. ``write(prepare(rows))`` — prepare
    hashes, looks up and parses (Python), write stores (the database).

    ``write`` does not rely on what ``prepare`` saw: a row another pull wrote after the look-up (pulls with
    other filters run in parallel and may share rows) is told apart by the INSERT itself on PostgreSQL, so its
    old children are replaced and it counts as updated."""

    model: type[models.Model]
    key: str
    key_of: KeyOf
    parse: Parser
    children: ChildTable | None = None

    def __call__(self, rows: list[dict]) -> BatchResult:
        return self.write(self.prepare(rows))

    def prepare(self, rows: list[dict]) -> PreparedBatch:
        result = BatchResult()
        digests: dict[object, tuple[str, dict, str]] = {}  # key → (hash, raw, its JSON); the last one wins
        unkeyed = []
        for raw in rows:
            ident = self.key_of(raw)
            if ident is None:
                unkeyed.append(raw)
            else:
                text = canonical_json(raw)
                digests[ident] = (_digest(text), raw, text)
        result.skipped += len(rows) - len(unkeyed) - len(digests)  # duplicates inside the batch
        known = dict(self.model.objects.filter(bulk.among(self.key, list(digests))).values_list(
            self.key, "payload_hash"))
        now = timezone.now()
        to_write, child_rows = [], {}
        for ident, (digest, raw, text) in digests.items():
            if known.get(ident) == digest:
                result.skipped += 1
                continue
            try:
                fields, found = self.parse(raw)
            except MalformedRow as exc:
                _fail(result, self.model, ident, exc)
                continue
            to_write.append({**fields, "raw": bulk.JsonText(text), "payload_hash": digest, "created_at": now,
                             "updated_at": now})
            child_rows[ident] = found
        for raw in unkeyed:  # parse only to say what is wrong with them
            try:
                self.parse(raw)
                reason = MalformedRow("no usable id")
            except MalformedRow as exc:
                reason = exc
            _fail(result, self.model, None, reason)
        return PreparedBatch(result, known, to_write, child_rows)

    def write(self, batch: PreparedBatch) -> BatchResult:
        result = batch.result
        if not batch.to_write:
            return result
        model, key, children = self.model, self.key, self.children
        update_fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", key, "created_at")]
        written = bulk.upsert(model, batch.to_write, unique_field=key, update_fields=update_fields,
                              returning="id", inserted=True)
        existed = {}
        for ident, (_pk, new) in written.items():
            existed[ident] = (ident in batch.known) if new is None else not new
        result.created += sum(1 for e in existed.values() if not e)
        result.updated += sum(1 for e in existed.values() if e)
        if children is None:
            return result
        replaced = [written[ident][0] for ident, e in existed.items() if e]
        if replaced:  # a new record has no children to replace
            children.model.objects.filter(bulk.among(children.parent_field, replaced)).delete()
        bulk.insert_ignoring_conflicts(children.model, [
            {**child, children.parent_field: written[ident][0]}
            for ident, found in batch.child_rows.items() for child in found
        ])
        return result


def upsert_records(rows: list[dict], *, model: type[models.Model], key: str, key_of: KeyOf, parse: Parser,
                   children: ChildTable | None = None) -> BatchResult:
    return RecordUpsert(model, key, key_of, parse, children)(rows)


def _fail(result: BatchResult, model, ident, exc: Exception) -> None:
    result.failed += 1
    result.errors.append(f"{model.__name__} {ident if ident is not None else '(no id)'}: {exc}")
