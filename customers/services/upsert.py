"""Set-based batch upserts: one SELECT to classify, one INSERT … ON CONFLICT for new and changed rows,
one DELETE + one INSERT to refresh their phones. Unchanged rows (same payload hash) are not written."""

from __future__ import annotations

from collections.abc import Callable

from django.db import models
from django.utils import timezone

from jobs.pulls import BatchResult

from .records import MalformedRow, payload_hash

Parser = Callable[[dict], tuple[dict, list[tuple[str, str]]]]


def upsert_records(
    rows: list[dict],
    *,
    model: type[models.Model],
    key: str,
    parse: Parser,
    phone_model: type[models.Model] | None = None,
) -> BatchResult:
    result = BatchResult()
    parsed: dict[int, tuple[dict, list, dict]] = {}  # key → (fields, phones, raw); last one wins in a batch
    for raw in rows:
        try:
            fields, phones = parse(raw)
        except MalformedRow as exc:
            result.failed += 1
            ident = raw.get("id") if isinstance(raw, dict) else None
            result.errors.append(f"{model.__name__} {ident if ident is not None else '(no id)'}: {exc}")
            continue
        parsed[fields[key]] = (fields, phones, raw)
    result.skipped += len(rows) - result.failed - len(parsed)  # duplicates inside the batch
    if not parsed:
        return result
    known = dict(model.objects.filter(**{f"{key}__in": list(parsed)}).values_list(key, "payload_hash"))
    now = timezone.now()
    to_write = []
    for ident, (fields, _phones, raw) in parsed.items():
        digest = payload_hash(raw)
        if known.get(ident) == digest:
            result.skipped += 1
            continue
        if ident in known:
            result.updated += 1
        else:
            result.created += 1
        to_write.append(model(**fields, raw=raw, payload_hash=digest, created_at=now, updated_at=now))
    if not to_write:
        return result
    update_fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", key, "created_at")]
    model.objects.bulk_create(to_write, update_conflicts=True, unique_fields=[key], update_fields=update_fields)
    if phone_model is not None:
        written = [getattr(obj, key) for obj in to_write]
        ids = dict(model.objects.filter(**{f"{key}__in": written}).values_list(key, "id"))
        phone_model.objects.filter(customer_id__in=ids.values()).delete()
        phone_model.objects.bulk_create(
            [phone_model(customer_id=ids[ident], e164=e164, source=source)
             for ident in written for e164, source in parsed[ident][1]],
            ignore_conflicts=True,
        )
    return result
