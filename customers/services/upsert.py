"""Set-based batch upserts: one SELECT to classify, one upsert for new and changed rows, one DELETE + one
INSERT to refresh their phones. Unchanged rows (same payload hash) are neither parsed nor written."""

from __future__ import annotations

from collections.abc import Callable

from django.db import models
from django.utils import timezone

from jobs import bulk
from jobs.pulls import BatchResult

from .records import MalformedRow, payload_hash

Parser = Callable[[dict], tuple[dict, list[tuple[str, str]]]]
KeyOf = Callable[[dict], int | None]


def upsert_records(
    rows: list[dict],
    *,
    model: type[models.Model],
    key: str,
    key_of: KeyOf,
    parse: Parser,
    phone_model: type[models.Model] | None = None,
) -> BatchResult:
    result = BatchResult()
    digests: dict[int, tuple[str, dict]] = {}  # key → (hash, raw); the last one wins within a batch
    unkeyed = []
    for raw in rows:
        ident = key_of(raw)
        if ident is None:
            unkeyed.append(raw)
        else:
            digests[ident] = (payload_hash(raw), raw)
    result.skipped += len(rows) - len(unkeyed) - len(digests)  # duplicates inside the batch
    known = dict(model.objects.filter(**{f"{key}__in": list(digests)}).values_list(key, "payload_hash"))
    now = timezone.now()
    to_write, phones = [], {}
    for ident, (digest, raw) in digests.items():
        if known.get(ident) == digest:
            result.skipped += 1
            continue
        try:
            fields, found_phones = parse(raw)
        except MalformedRow as exc:
            _fail(result, model, ident, exc)
            continue
        if ident in known:
            result.updated += 1
        else:
            result.created += 1
        to_write.append({**fields, "raw": raw, "payload_hash": digest, "created_at": now, "updated_at": now})
        if found_phones or ident in known:
            phones[ident] = found_phones
    for raw in unkeyed:  # parse only to say what is wrong with them
        try:
            parse(raw)
            reason = MalformedRow("no usable id")
        except MalformedRow as exc:
            reason = exc
        _fail(result, model, None, reason)
    if not to_write:
        return result
    update_fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", key, "created_at")]
    bulk.upsert(model, to_write, unique_field=key, update_fields=update_fields)
    if phone_model is not None and phones:
        ids = dict(model.objects.filter(**{f"{key}__in": list(phones)}).values_list(key, "id"))
        changed = [ids[ident] for ident in phones if ident in known]
        if changed:  # a new customer has no phones to replace
            phone_model.objects.filter(customer_id__in=changed).delete()
        bulk.insert_ignoring_conflicts(phone_model, [
            {"customer_id": ids[ident], "e164": e164, "source": source}
            for ident, found in phones.items() for e164, source in found
        ])
    return result


def _fail(result: BatchResult, model, ident, exc: Exception) -> None:
    result.failed += 1
    result.errors.append(f"{model.__name__} {ident if ident is not None else '(no id)'}: {exc}")
