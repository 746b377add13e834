"""Nhanh's v3 webhooks (shared/upstreams/nhanh.md §8): ``POST {"event", "businessId", "data"}`` with the app's
verify token as the ``Authorization`` header.

``receive`` is all the view does: the token is compared in constant time with the one stored (encrypted) on the
Nhanh connection — a missing or wrong token is a 401 and nothing is stored —, then the delivery is recorded and a
task queued; Nhanh gets its 200 at once (it disables webhooks that answer slowly or fail).

A delivery whose body (SHA-256 digest) was already received within ``SHOPBRIDGE_NHANH_WEBHOOK_REPLAY_SECONDS`` is a
replay (Nhanh retries deliveries it thinks failed; anyone who saw one could send it again): it is recorded as such
and changes nothing. The first delivery of a digest holds a partial unique index, so two copies arriving at once
cannot both count as first.

``process_delivery`` (a Celery task) does the work: ``inventoryChange`` stores each product's stock per depot
(and depots first seen) and queues a stock sync of the mapped products it touched; ``productAdd`` /
``productUpdate`` store the product with the catalog pull's upsert (its stock too: the record carries it);
``productDelete`` keeps the product but marks it inactive with no stock, so its Shopify variant stops selling.

Coalescing: the products to sync wait as one ``PendingStockSync`` row per mapping whatever the number of events; a
task ``SHOPBRIDGE_STOCK_SYNC_COALESCE_SECONDS`` later claims the rows (``DELETE … RETURNING``: each row goes to
exactly one claimer) and syncs those mappings in one product sync job, so a burst of events for one product sends
one update.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import Connection
from jobs.models import StartedBy

from ..models import (
    NhanhProduct,
    NhanhProductStatus,
    NhanhStock,
    NhanhWebhookDelivery,
    PendingStockSync,
    ProductMapping,
    WebhookOutcome,
)
from . import pulls, records

log = logging.getLogger(__name__)

STOCK_EVENTS = ("inventoryChange",)
PRODUCT_EVENTS = ("productAdd", "productUpdate")
KNOWN_EVENTS = (*STOCK_EVENTS, *PRODUCT_EVENTS, "productDelete", "webhooksEnabled")
MAX_BODY_BYTES = 5 * 1024 * 1024  # an inventoryChange batch of 100 products is far below this
STOCK_FIELDS = ("remain", "available", "holding", "shipping", "damaged", "transfering")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def verify_token(authorization: str | None) -> bool:
    """The header equals the verify token stored on the Nhanh connection (constant-time); no token stored: no."""
    conn = Connection.objects.filter(system="nhanh").first()
    expected = (conn.webhook_verify_token if conn else "") or ""
    given = (authorization or "").strip()
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def receive(body: bytes, authorization: str | None) -> tuple[int, dict]:
    """The view's whole work: (HTTP status, JSON answer)."""
    if not verify_token(authorization):
        return 401, {"error": "unauthorized: the Authorization header must be the app's webhook verify token"}
    if len(body) > MAX_BODY_BYTES:
        return 413, {"error": "body too large"}
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 400, {"error": "the body is not valid JSON"}
    if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), str) or not envelope["event"]:
        return 400, {"error": 'expected a JSON object {"event", "businessId", "data"}'}
    delivery = record_delivery(envelope, hashlib.sha256(body).hexdigest())
    return 200, {"ok": True, "delivery": delivery.pk, "outcome": delivery.outcome}


def record_delivery(envelope: dict, digest: str) -> NhanhWebhookDelivery:
    """Store the delivery (a replay as such) and, unless it is a replay or ignored, queue its processing."""
    now = timezone.now()
    event = str(envelope.get("event"))[:64]
    business = str(envelope.get("businessId") or "")[:64]
    fields = {"event": event, "business_id": business, "digest": digest, "payload": envelope, "received_at": now,
              "product_ids": _product_ids(event, envelope.get("data"))[:1000]}
    conn = Connection.objects.filter(system="nhanh").first()
    ignored = ""
    if conn and conn.business_id and business and business != str(conn.business_id):
        ignored = f"businessId {business} is not this connection's ({conn.business_id})"
    elif event not in KNOWN_EVENTS:
        ignored = f"event {event!r} is not handled"
    elif event == "webhooksEnabled":
        ignored = "webhooks enabled"
    window = timedelta(seconds=settings.SHOPBRIDGE["NHANH_WEBHOOK_REPLAY_SECONDS"])
    with transaction.atomic():
        # A first delivery older than the window no longer makes this one a replay: it stops being "first".
        NhanhWebhookDelivery.objects.filter(digest=digest, is_first=True, received_at__lt=now - window).update(
            is_first=False)
        try:
            with transaction.atomic():
                delivery = NhanhWebhookDelivery.objects.create(
                    **fields, is_first=True,
                    outcome=WebhookOutcome.IGNORED if ignored else WebhookOutcome.QUEUED, detail=ignored,
                    processed_at=now if ignored else None)
        except IntegrityError:
            first = NhanhWebhookDelivery.objects.filter(digest=digest, is_first=True).values_list("pk", flat=True)
            return NhanhWebhookDelivery.objects.create(
                **fields, is_first=False, outcome=WebhookOutcome.REPLAY, processed_at=now,
                detail=f"same body as delivery #{first.first()} (within {int(window.total_seconds())} s): ignored")
        if not ignored:
            from ..tasks_sync import process_nhanh_webhook

            transaction.on_commit(lambda: process_nhanh_webhook.delay(delivery.pk))
    return delivery


def _product_ids(event: str, data) -> list[int]:
    if event == "productDelete":
        items = data if isinstance(data, list) else []
        return [int(i) for i in items if _is_int(i)]
    records = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    return [int(r["id"]) for r in records if isinstance(r, dict) and _is_int(r.get("id"))]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, str) and value.isdigit())


# --- processing (Celery task) ----------------------------------------------------------------------------
def process_delivery(delivery_id: int) -> str:
    """Apply one delivery; runs once (claimed QUEUED → PROCESSING), its outcome and detail recorded."""
    claimed = NhanhWebhookDelivery.objects.filter(pk=delivery_id, outcome=WebhookOutcome.QUEUED).update(
        outcome=WebhookOutcome.PROCESSING)
    if not claimed:
        return "not queued"
    delivery = NhanhWebhookDelivery.objects.get(pk=delivery_id)
    try:
        with transaction.atomic(durable=True):
            detail, mapping_ids = apply(delivery.event, delivery.payload.get("data"), delivery.received_at)
            queue_stock_sync(mapping_ids)
            NhanhWebhookDelivery.objects.filter(pk=delivery_id).update(
                outcome=WebhookOutcome.PROCESSED, detail=detail, processed_at=timezone.now())
    except Exception as exc:
        log.exception("nhanh webhook delivery %s (%s) failed", delivery_id, delivery.event)
        NhanhWebhookDelivery.objects.filter(pk=delivery_id).update(
            outcome=WebhookOutcome.FAILED, detail=f"{type(exc).__name__}: {exc}"[:2000], processed_at=timezone.now())
        return WebhookOutcome.FAILED
    return WebhookOutcome.PROCESSED


def apply(event: str, data, as_of=None) -> tuple[str, list[int]]:
    """Store what the event says (``as_of``: when it was received); returns (a summary, the mappings whose
    stock changed). Records are read by the catalog's parsers (``records``) and product records stored by the
    catalog's upsert (``pulls.upsert_nhanh_products``)."""
    as_of = as_of or timezone.now()
    if event in STOCK_EVENTS:
        items = [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]
        changed, products, skipped = _store_stock(items, as_of)
        note = f"; {skipped} older than the stock stored or not pulled yet: skipped" if skipped else ""
        return f"stock of {len(products)} product(s), {changed} depot row(s) stored{note}", _mappings_of(products)
    if event in PRODUCT_EVENTS:
        items = [r for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]
        result = pulls.upsert_nhanh_products(items)
        if result.errors:
            raise ValueError("; ".join(result.errors[:3]))
        ids = [int(r["id"]) for r in items if _is_int(r.get("id"))]
        return (f"{len(ids)} product(s) stored ({result.created} new, {result.updated} updated)",
                _mappings_of(list(NhanhProduct.objects.filter(nhanh_id__in=ids))))
    if event == "productDelete":
        ids = _product_ids(event, data)
        products = list(NhanhProduct.objects.filter(nhanh_id__in=ids))
        NhanhProduct.objects.filter(pk__in=[p.pk for p in products]).update(
            status=NhanhProductStatus.INACTIVE, stock_updated_at=as_of)
        NhanhStock.objects.filter(product__in=products).update(**{f: 0 for f in STOCK_FIELDS})
        return f"{len(products)} product(s) deleted in Nhanh: inactive, no stock", _mappings_of(products)
    return "nothing to do", []


def _store_stock(items: list[dict], as_of) -> tuple[int, list[NhanhProduct], int]:
    """Each product's stock per depot as an inventoryChange record reports it (depots it does not list are left
    as they are): (depot rows stored, products changed, records skipped).

    Deliveries may be processed out of order (several workers, Nhanh's retries): a product's stock is written
    only by a delivery received after the stock stored (``stock_updated_at``, which pulls set too), under a row
    lock, so an older delivery never overwrites a newer one. Products not pulled yet are skipped (no mapping can
    point at them; their pull brings their stock)."""
    parsed: dict[int, list[dict]] = {}
    for item in items:
        if _is_int(item.get("id")):
            parsed[int(item["id"])] = records.nhanh_depots({"depots": item.get("depots") or []})
    if not parsed:
        return 0, [], len(items)
    products = list(NhanhProduct.objects.select_for_update().filter(
        Q(stock_updated_at__isnull=True) | Q(stock_updated_at__lt=as_of), nhanh_id__in=list(parsed)))
    rows = [NhanhStock(product_id=p.pk, **row) for p in products for row in parsed[p.nhanh_id]]
    pulls._note_depots({row["depot_id"] for found in parsed.values() for row in found})
    if rows:
        NhanhStock.objects.bulk_create(rows, update_conflicts=True, unique_fields=["product", "depot_id"],
                                       update_fields=list(STOCK_FIELDS))
    NhanhProduct.objects.filter(pk__in=[p.pk for p in products]).update(stock_updated_at=as_of)
    return len(rows), products, len(items) - len(products)


def _mappings_of(products: list[NhanhProduct]) -> list[int]:
    return list(ProductMapping.objects.filter(nhanh_product__in=products, is_active=True)
                .values_list("pk", flat=True))


# --- coalesced stock sync ----------------------------------------------------------------------------------
def queue_stock_sync(mapping_ids: list[int]) -> None:
    """One pending row per mapping (more events for it add nothing), and a drain task after the coalescing delay
    (several drains find the rows once: each row is claimed by exactly one)."""
    if not mapping_ids:
        return
    PendingStockSync.objects.bulk_create([PendingStockSync(mapping_id=m) for m in mapping_ids],
                                         ignore_conflicts=True)
    from ..tasks_sync import drain_stock_syncs

    delay = settings.SHOPBRIDGE["STOCK_SYNC_COALESCE_SECONDS"]
    transaction.on_commit(lambda: drain_stock_syncs.apply_async(countdown=delay))


def claim_pending_syncs(limit: int = 50_000) -> list[int]:
    """Take the waiting mappings: DELETE … RETURNING (PostgreSQL, SQLite ≥ 3.35), so each row is taken once."""
    table = PendingStockSync._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT %s) "  # noqa: S608
                       f"RETURNING mapping_id", [limit])
        return sorted(row[0] for row in cursor.fetchall())


def drain_pending_syncs() -> dict:
    from .sync import start_product_sync

    mapping_ids = claim_pending_syncs()
    if not mapping_ids:
        return {"claimed": 0}
    job = start_product_sync(scope="ids", ids=mapping_ids, started_by=StartedBy.SYSTEM, run_now=True)
    return {"claimed": len(mapping_ids), "job_id": job.pk}
