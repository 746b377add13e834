"""Stock (and, when asked, prices) of mapped products from Nhanh to Shopify.

Stock: for every active mapping and every Shopify location that at least one Nhanh depot feeds, the quantity to
hold is the sum of ``available`` over the depots mapped to that location (``stock.desired_levels``).
Only levels that differ from the value Shopify last reported (``ShopifyInventoryLevel``, read by the catalog pull
and kept by this sync) are sent, with ``inventorySetQuantities``: up to 250 quantities a call, each with
``changeFromQuantity`` = the value we last read, and an ``@idempotent`` key per call.

A call is saved (``StockPush``: key, exact input, the mapping of each quantity) and committed before it is sent,
and deleted once its answer is recorded. A dropped connection, timeout or 5xx is sent again at once with the same
key and input (Shopify replays the first result: nothing applied twice); if it still gets no answer, the push
stays and the next sync — any scope — sends it again first, still with its key.

Shopify applies a call all or nothing. A quantity it refuses is set aside with Shopify's userErrors verbatim on
its mapping and the others are sent again (a new call, so a new key); ``CHANGE_FROM_QUANTITY_STALE`` (someone
changed the level since we read it) re-reads that level and sends it once more from the value read, and a second
stale answer is an error like any other.

Prices (off by default; ``prices=True`` or ``SHOPBRIDGE_PRODUCT_SYNC_PRICES``): Nhanh's retail price as the
variant's price and Nhanh's old price as compare-at (when above the retail price), only where they differ from
what Shopify holds, with ``productVariantsBulkUpdate`` per product (all or nothing).

Calls go out ``SHOPBRIDGE_SYNC_CONCURRENCY`` at a time on sender threads; the client paces them together by the
cost budget every process shares. The database is only touched on the job's thread.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from customers.models import SyncStatus
from integrations.clients import client_for
from integrations.errors import UpstreamError, UpstreamUnavailable
from integrations.shopify import inventory
from integrations.status import HeldOutcomes
from jobs import services as jobs
from jobs.models import BackgroundJob, StartedBy
from jobs.operations import RETRY_FAILED_SYNC

from ..models import (
    NhanhDepot,
    ProductMapping,
    ShopifyInventoryLevel,
    ShopifyVariant,
    StockPush,
)
from . import stock

log = logging.getLogger(__name__)

PRODUCT_SYNC = "PRODUCT_SYNC"
SCOPES = ("all", "ids", "failed")
MAPPINGS_PER_ROUND = 5000
STALE_CODE = "CHANGE_FROM_QUANTITY_STALE"
REFERENCE_URI = "app://shopbridge/product-sync/{job}"


@dataclass(frozen=True)
class LevelChange:
    """One level to set: a mapping's variant at one location."""

    mapping_id: int
    variant_pk: int
    inventory_item_id: int
    location_id: int  # Shopify location id
    quantity: int
    change_from: int | None  # the value we last read (None: none read; sent as an explicit null)

    @property
    def item_gid(self) -> str:
        return f"gid://shopify/InventoryItem/{self.inventory_item_id}"

    @property
    def location_gid(self) -> str:
        return f"gid://shopify/Location/{self.location_id}"

    def as_input(self) -> dict:
        return {"inventoryItemId": self.item_gid, "locationId": self.location_gid, "quantity": self.quantity,
                "changeFromQuantity": self.change_from}


@dataclass
class ProductSyncTotals:
    mappings: int = 0  # in scope
    synced: int = 0  # mappings now in step (sent, or nothing to send)
    failed: int = 0
    levels_sent: int = 0
    levels_unchanged: int = 0
    stale_reread: int = 0
    resent_pushes: int = 0  # pushes left by an earlier run, sent again with their key
    calls: int = 0  # inventorySetQuantities calls
    prices_sent: int = 0
    price_calls: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class ProductSyncResult:
    """What a product sync job reports (``jobs.results.result_of``)."""

    scope: str = ""
    prices: bool = False
    mappings: int = 0
    synced: int = 0
    failed: int = 0
    levels_sent: int = 0
    levels_unchanged: int = 0
    stale_reread: int = 0
    resent_pushes: int = 0
    calls: int = 0
    prices_sent: int = 0
    price_calls: int = 0
    errors: list[str] = field(default_factory=list)
    api_cost: int | None = None


# --- what Shopify should hold -----------------------------------------------------------------------------
def mapped_locations() -> list[int]:
    """Shopify location ids that at least one Nhanh depot feeds."""
    return sorted(set(NhanhDepot.objects.filter(location__isnull=False)
                      .values_list("location__shopify_id", flat=True)))


def level_changes(mapping_ids: list[int]) -> tuple[list[LevelChange], int, dict[int, str]]:
    """The levels of these mappings that differ from Shopify's last-read values (``stock.desired_levels``: Nhanh's
    available summed over the depots feeding each location): (changes, levels already in step, mapping id → why
    it cannot be synced)."""
    changes, unchanged, problems = [], 0, {}
    for level in stock.desired_levels(mapping_ids=mapping_ids):
        if not level.differs:
            unchanged += 1
        elif not level.inventory_item_id:
            problems[level.mapping_id] = "The Shopify variant has no inventory item id: pull Shopify products first."
        else:
            changes.append(LevelChange(level.mapping_id, level.variant_id, level.inventory_item_id,
                                       level.location_id, level.available, level.shopify_available))
    return changes, unchanged, problems


def mappings_in_scope(scope: str, ids: Iterable[int] | None = None):
    qs = ProductMapping.objects.filter(is_active=True)
    if scope == "ids":
        qs = qs.filter(pk__in=list(ids or []))
    elif scope == "failed":
        qs = qs.filter(sync_status=SyncStatus.FAILED)
    elif scope != "all":
        raise ValueError(f"unknown sync scope {scope!r}; use one of {', '.join(SCOPES)}")
    return qs.order_by("pk")


# --- outcomes per mapping ---------------------------------------------------------------------------------
@dataclass
class _Outcome:
    sent: dict[str, int] = field(default_factory=dict)  # location id (str) → quantity set
    errors: list = field(default_factory=list)  # Shopify's userErrors (dicts) or messages (str), verbatim
    touched: bool = False  # something was sent or tried


class _Outcomes(dict):
    def of(self, mapping_id: int) -> _Outcome:
        if mapping_id not in self:
            self[mapping_id] = _Outcome()
        return self[mapping_id]


def _error_text(errors: list) -> str:
    """Shopify's userErrors as it sent them (JSON), or the messages of failures without an answer."""
    if all(isinstance(e, dict) for e in errors):
        return json.dumps(errors, ensure_ascii=False)
    return "\n".join(e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in errors)


def _record(mapping_ids: Iterable[int], outcomes: _Outcomes, totals: ProductSyncTotals) -> None:
    """A round's outcomes in a few set-based UPDATEs: Shopify's errors verbatim (one UPDATE per distinct error),
    the others in step, and the levels sent merged into ``last_sent_stock``."""
    now = timezone.now()
    keep = settings.SHOPBRIDGE["ERROR_EXAMPLES_KEPT"]
    ids = list(mapping_ids)
    by_error: dict[str, list[int]] = defaultdict(list)
    touched, untouched = [], []
    for mapping_id in ids:
        outcome = outcomes.get(mapping_id)
        if outcome is not None and outcome.errors:
            by_error[_error_text(outcome.errors)].append(mapping_id)
        elif outcome is not None and outcome.touched:
            touched.append(mapping_id)
        else:
            untouched.append(mapping_id)
    for text, failed in by_error.items():
        for part in _chunks(failed):
            ProductMapping.objects.filter(pk__in=part).update(
                sync_status=SyncStatus.FAILED, last_error=text, sync_attempts=F("sync_attempts") + 1)
        totals.failed += len(failed)
        if len(totals.errors) < keep:
            variants = dict(ProductMapping.objects.filter(pk__in=failed[:keep]).values_list(
                "pk", "shopify_variant__shopify_id"))
            totals.errors.extend(f"mapping {m} (Shopify variant {variants.get(m)}): {text[:500]}"
                                 for m in failed[:keep - len(totals.errors)])
    for part in _chunks(touched):
        ProductMapping.objects.filter(pk__in=part).update(
            sync_status=SyncStatus.SYNCED, last_error="", synced_at=now, sync_attempts=F("sync_attempts") + 1)
    for part in _chunks(untouched):  # nothing to send: in step (only rows not recorded as such are written)
        ProductMapping.objects.filter(pk__in=part).filter(
            ~Q(sync_status=SyncStatus.SYNCED) | ~Q(last_error="")).update(
            sync_status=SyncStatus.SYNCED, last_error="", synced_at=now)
    totals.synced += len(touched) + len(untouched)
    sent = [(m, json.dumps(outcomes[m].sent)) for m in ids if m in outcomes and outcomes[m].sent]
    for part in _chunks(sent, 1000):
        _merge_sent_stock(part)


def _chunks(items: list, size: int = 5000):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _merge_sent_stock(rows: list[tuple[int, str]]) -> None:
    """``last_sent_stock`` of each mapping merged with the levels just set (JSON objects), one UPDATE."""
    table = ProductMapping._meta.db_table
    values = ", ".join(["(%s, %s)"] * len(rows))
    params = [x for row in rows for x in row]
    if connection.vendor == "postgresql":
        sql = (f"WITH v(id, s) AS (VALUES {values}) UPDATE {table} AS m SET last_sent_stock = "  # noqa: S608
               f"COALESCE(m.last_sent_stock, '{{}}'::jsonb) || v.s::jsonb FROM v WHERE m.id = v.id")
    else:
        sql = (f"WITH v(id, s) AS (VALUES {values}) UPDATE {table} SET last_sent_stock = "  # noqa: S608
               f"json_patch(COALESCE(last_sent_stock, '{{}}'), v.s) FROM v WHERE {table}.id = v.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- sending ----------------------------------------------------------------------------------------------
def _quantity_index(error: dict) -> int | None:
    """The quantity a userError names (``field: ["input", "quantities", "3", …]``), if any."""
    path = error.get("field") or []
    for i, part in enumerate(path[:-1]):
        if part == "quantities":
            try:
                return int(path[i + 1])
            except (TypeError, ValueError):
                return None
    return None


class _StockSender:
    """Keeps up to ``concurrency`` pushes in flight; settles them (and what they lead to) on the job's thread."""

    def __init__(self, client, concurrency: int, totals: ProductSyncTotals, outcomes: _Outcomes, reference: str,
                 ctx=None):
        self.client, self.concurrency, self.totals, self.outcomes = client, concurrency, totals, outcomes
        self.reference, self.ctx = reference, ctx
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stock")
        self.call_outcomes = HeldOutcomes()  # the senders' upstream health, written here (integrations.status)
        self.in_flight: deque[tuple[Future, StockPush, list[LevelChange]]] = deque()
        # Bookkeeping is done while the job's thread would otherwise wait for Shopify (the bucket paces the
        # calls): levels Shopify now holds, and mappings whose every level has its answer, are written then,
        # so little is left once the last answer is in (a sync living on the restore rate would otherwise end
        # with that time's points unspent in the bucket).
        self.levels_to_store: list[tuple[int, int, int | None]] = []
        self.levels_left: dict[int, int] = defaultdict(int)  # mapping id → its levels sent, not yet answered
        self.finished: list[int] = []  # mappings whose levels are all answered, outcome not recorded yet

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.call_outcomes.write()  # a sync that ended on an error still reports what the calls saw

    # A push is saved (committed: we run outside any transaction) before it is sent.
    def send(self, changes: list[LevelChange], *, stale_retry: bool = False) -> None:
        for start in range(0, len(changes), inventory.MAX_QUANTITIES_PER_CALL):
            part = changes[start:start + inventory.MAX_QUANTITIES_PER_CALL]
            push = StockPush.objects.create(
                idempotency_key=str(uuid.uuid4()), owners=[c.mapping_id for c in part], stale_retry=stale_retry,
                input={"name": inventory.STOCK_NAME, "reason": inventory.STOCK_REASON,
                       "referenceDocumentUri": self.reference, "quantities": [c.as_input() for c in part]},
                claimed_at=timezone.now())
            self._submit(push, part)

    def resend(self, push: StockPush, changes: list[LevelChange]) -> None:
        """A push an earlier run left without an answer: the same key and input again."""
        self.totals.resent_pushes += 1
        self._submit(push, changes)

    def _submit(self, push: StockPush, changes: list[LevelChange]) -> None:
        for c in changes:
            self.levels_left[c.mapping_id] += 1
        while len(self.in_flight) >= self.concurrency:
            self._settle(*self.in_flight.popleft())
        future = self.pool.submit(self.call_outcomes.run, inventory.set_quantities, self.client, push.input,
                                  push.idempotency_key)
        self.in_flight.append((future, push, changes))

    def drain(self) -> None:
        """Settle every call in flight; every mapping sent is recorded when it returns."""
        while self.in_flight:
            self._settle(*self.in_flight.popleft())
        self.write_down()

    def write_down(self) -> None:
        """Store the levels answered and record the mappings finished so far."""
        self.call_outcomes.write()
        for part in _chunks(self.levels_to_store, 2000):
            _store_levels(part)
        self.levels_to_store = []
        if self.finished:
            finished, self.finished = self.finished, []
            _record(finished, self.outcomes, self.totals)
            for mapping_id in finished:
                self.outcomes.pop(mapping_id, None)

    def _settle(self, future: Future, push: StockPush, changes: list[LevelChange]) -> None:
        if not future.done():
            self.write_down()
        self._settle_answer(future, push, changes)
        # After any resend of these levels (counted on submit), so a mapping finishes only with its last answer.
        for c in changes:
            self.levels_left[c.mapping_id] -= 1
            if not self.levels_left[c.mapping_id]:
                del self.levels_left[c.mapping_id]
                self.finished.append(c.mapping_id)

    def _settle_answer(self, future: Future, push: StockPush, changes: list[LevelChange]) -> None:
        self.totals.calls += 1
        try:
            _group, errors = future.result()
        except UpstreamUnavailable as exc:
            # No answer even after resending with the key: keep the push (key and input) for the next sync.
            StockPush.objects.filter(pk=push.pk).update(claimed_at=None, attempts=F("attempts") + 1,
                                                        last_error=str(exc)[:2000])
            for c in changes:
                o = self.outcomes.of(c.mapping_id)
                o.touched = True
                o.errors.append(f"No answer from Shopify ({exc}); the next sync sends the same request again "
                                f"(idempotency key {push.idempotency_key}).")
            return
        except UpstreamError as exc:  # refused as a whole (GraphQL error, auth): nothing was applied
            push.delete()
            for c in changes:
                o = self.outcomes.of(c.mapping_id)
                o.touched = True
                o.errors.append(str(exc))
            return
        push.delete()
        if not errors:
            self._applied(changes)
            return
        by_index: dict[int, list[dict]] = defaultdict(list)
        unplaced = []
        for error in errors:
            index = _quantity_index(error)
            (by_index[index].append(error) if index is not None and index < len(changes) else unplaced.append(error))
        if unplaced:  # Shopify did not say which quantity: all of the call's mappings get its errors
            for c in changes:
                o = self.outcomes.of(c.mapping_id)
                o.touched = True
                o.errors.extend(errors)
            return
        again, stale = [], []
        for i, c in enumerate(changes):
            if i not in by_index:
                again.append(c)  # refused only because the call was: send it again
                continue
            if {e.get("code") for e in by_index[i]} == {STALE_CODE} and not push.stale_retry:
                now = inventory.read_available(self.client, c.item_gid, c.location_gid)
                self.totals.stale_reread += 1
                _store_levels([(c.variant_pk, c.location_id, now)])
                if now == c.quantity:
                    self._applied([c], sent=False)
                else:
                    stale.append(replace(c, change_from=now))
                continue
            o = self.outcomes.of(c.mapping_id)
            o.touched = True
            o.errors.extend(by_index[i])
        if again:
            self.send(again, stale_retry=push.stale_retry)
        if stale:
            self.send(stale, stale_retry=True)

    def _applied(self, changes: list[LevelChange], *, sent: bool = True) -> None:
        # Stored by ``write_down`` (while waiting for the next answer, or at the end of the round) in bulk.
        self.levels_to_store.extend((c.variant_pk, c.location_id, c.quantity) for c in changes
                                    if c.variant_pk)  # 0: a resent push whose variant is gone since
        for c in changes:
            o = self.outcomes.of(c.mapping_id)
            o.touched = True
            o.sent[str(c.location_id)] = c.quantity
        if sent:
            self.totals.levels_sent += len(changes)


def _store_levels(levels: list[tuple[int, int, int | None]]) -> None:
    """What Shopify now holds (set by us or read back): the next sync compares with it."""
    now = timezone.now()
    ShopifyInventoryLevel.objects.bulk_create(
        [ShopifyInventoryLevel(variant_id=v, location_id=loc, available=qty, read_at=now) for v, loc, qty in levels],
        update_conflicts=True, unique_fields=["variant", "location_id"], update_fields=["available", "read_at"])


def _claim_left_pushes() -> list[StockPush]:
    """Pushes an earlier run sent without getting an answer (or was killed while sending): claimed one by one
    with a conditional UPDATE, so two syncs never send the same one at once."""
    cutoff = timezone.now() - timedelta(seconds=settings.SHOPBRIDGE["STALE_AFTER_SECONDS"])
    claimed = []
    for push in StockPush.objects.filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=cutoff)).order_by("pk"):
        if StockPush.objects.filter(pk=push.pk).filter(
                Q(claimed_at__isnull=True) | Q(claimed_at__lt=cutoff)).update(claimed_at=timezone.now()):
            claimed.append(push)
    return claimed


def _changes_of(push: StockPush) -> list[LevelChange]:
    quantities = push.input.get("quantities") or []
    items = {int(q["inventoryItemId"].rsplit("/", 1)[-1]) for q in quantities}
    variants = dict(ShopifyVariant.objects.filter(inventory_item_id__in=items)
                    .values_list("inventory_item_id", "pk"))
    changes = []
    for owner, q in zip(push.owners, quantities, strict=False):
        item = int(q["inventoryItemId"].rsplit("/", 1)[-1])
        changes.append(LevelChange(owner, variants.get(item, 0), item, int(q["locationId"].rsplit("/", 1)[-1]),
                                   q["quantity"], q.get("changeFromQuantity")))
    return changes


# --- prices -----------------------------------------------------------------------------------------------
def _money(value) -> str | None:
    return None if value is None else f"{Decimal(value):.2f}"


def price_changes(mapping_ids: list[int]) -> dict[int, list[dict]]:
    """Shopify product id → [{mapping, variant, price, compare_at}] whose price or compare-at differs from
    Nhanh's retail / old price (compare-at only when above the retail price)."""
    rows = ProductMapping.objects.filter(pk__in=mapping_ids, nhanh_product__retail_price__isnull=False).values(
        "pk", "shopify_variant_id", "shopify_variant__shopify_id", "shopify_variant__product_id",
        "shopify_variant__price", "shopify_variant__compare_at_price", "nhanh_product__retail_price",
        "nhanh_product__old_price")
    grouped: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        price = Decimal(r["nhanh_product__retail_price"]).quantize(Decimal("0.01"))
        old = r["nhanh_product__old_price"]
        compare_at = Decimal(old).quantize(Decimal("0.01")) if old is not None and old > price else None
        if r["shopify_variant__price"] == price and r["shopify_variant__compare_at_price"] == compare_at:
            continue
        grouped[r["shopify_variant__product_id"]].append({
            "mapping": r["pk"], "variant": r["shopify_variant_id"], "gid":
            f"gid://shopify/ProductVariant/{r['shopify_variant__shopify_id']}", "price": price,
            "compare_at": compare_at})
    return grouped


def sync_prices(client, mapping_ids: list[int], outcomes: _Outcomes, totals: ProductSyncTotals) -> None:
    """One productVariantsBulkUpdate per product; refused variants keep Shopify's errors, the others of that
    product are sent once more (the call was all or nothing)."""
    for product_id, items in price_changes(mapping_ids).items():
        pending = items
        for _round in range(2):
            if not pending:
                break
            variants = [{"id": i["gid"], "price": _money(i["price"]), "compareAtPrice": _money(i["compare_at"])}
                        for i in pending]
            totals.price_calls += 1
            try:
                updated, errors = inventory.update_variant_prices(client, f"gid://shopify/Product/{product_id}",
                                                                  variants)
            except UpstreamError as exc:
                for i in pending:
                    o = outcomes.of(i["mapping"])
                    o.touched = True
                    o.errors.append(f"price: {exc}")
                break
            if not errors:
                ShopifyVariant.objects.bulk_update(
                    [ShopifyVariant(pk=i["variant"], price=i["price"], compare_at_price=i["compare_at"])
                     for i in pending], ["price", "compare_at_price"])
                ProductMapping.objects.bulk_update(
                    [ProductMapping(pk=i["mapping"], last_sent_price=i["price"],
                                    last_sent_compare_at_price=i["compare_at"]) for i in pending],
                    ["last_sent_price", "last_sent_compare_at_price"])
                for i in pending:
                    outcomes.of(i["mapping"]).touched = True
                totals.prices_sent += len(pending)
                break
            named = defaultdict(list)
            for error in errors:
                path = error.get("field") or []
                index = int(path[1]) if len(path) > 1 and path[0] == "variants" and str(path[1]).isdigit() else None
                named[index].append(error)
            failed = set(named) - {None} if None not in named else set(range(len(pending)))
            for index in failed:
                o = outcomes.of(pending[index]["mapping"])
                o.touched = True
                o.errors.extend(named.get(index) or errors)
            pending = [i for n, i in enumerate(pending) if n not in failed]


# --- the sync ---------------------------------------------------------------------------------------------
def sync_products(ctx: jobs.JobContext | None, *, scope: str = "all", ids=None, prices: bool | None = None,
                  client=None, concurrency: int | None = None, reference: str | None = None) -> ProductSyncTotals:
    prices = settings.SHOPBRIDGE["PRODUCT_SYNC_PRICES"] if prices is None else prices
    concurrency = max(1, concurrency or settings.SHOPBRIDGE["SYNC_CONCURRENCY"])
    totals = ProductSyncTotals()
    qs = mappings_in_scope(scope, ids)
    own_client = client is None
    client = client or client_for("shopify")
    reference = reference or REFERENCE_URI.format(job=ctx.job_id if ctx else "manual")
    sender = _StockSender(client, concurrency, totals, _Outcomes(), reference, ctx)
    try:
        # 1. Pushes left without an answer go first, with their key (Shopify replays them if they were applied).
        left = _claim_left_pushes()
        for push in left:
            sender.resend(push, _changes_of(push))
        sender.drain()  # records the mappings of those pushes
        # 2. The levels that differ, round by round.
        locations = mapped_locations()
        all_ids = list(qs.values_list("pk", flat=True))
        totals.mappings = len(all_ids)
        if ctx:
            ctx.progress(total=totals.mappings, metadata={"scope": scope, "prices": prices,
                                                          "locations": len(locations)})
        for start in range(0, len(all_ids), MAPPINGS_PER_ROUND):
            round_ids = all_ids[start:start + MAPPINGS_PER_ROUND]
            changes, unchanged, problems = level_changes(round_ids)
            totals.levels_unchanged += unchanged
            for mapping_id, problem in problems.items():
                sender.outcomes.of(mapping_id).errors.append(problem)
            if prices:
                sync_prices(client, round_ids, sender.outcomes, totals)
            # Mappings with no level to send are settled already (in step, or a problem, or prices only).
            sending = {c.mapping_id for c in changes}
            _record([m for m in round_ids if m not in sending], sender.outcomes, totals)
            sender.outcomes = _Outcomes({m: o for m, o in sender.outcomes.items() if m in sending})
            sender.send(changes)
            sender.drain()  # the sent ones are recorded as their last level is answered
            if ctx:
                ctx.progress(processed=min(start + len(round_ids), totals.mappings),
                             successful=totals.synced, failed=totals.failed, metadata=_summary(totals))
        if ctx:
            ctx.progress(metadata={**_summary(totals), "api_cost": getattr(client, "cost_spent", None),
                                   "concurrency": concurrency})
    finally:
        sender.close()
        if own_client:
            client.close()
    return totals


def _summary(totals: ProductSyncTotals) -> dict:
    return {k: getattr(totals, k) for k in ("mappings", "synced", "failed", "levels_sent", "levels_unchanged",
                                            "stale_reread", "resent_pushes", "calls", "prices_sent",
                                            "price_calls", "errors")}


# --- as jobs ------------------------------------------------------------------------------------------------
def start_product_sync(*, scope: str = "all", ids=None, prices: bool | None = None,
                       started_by: str = StartedBy.SYSTEM, user=None, retry_of: BackgroundJob | None = None,
                       run_now: bool = False, start_now: bool = True, **_ignored) -> BackgroundJob:
    """Queue a product sync (``run_now``: run it here; ``start_now=False``: leave it for the caller to run).
    ``scope="failed"`` is a RETRY_FAILED_SYNC job with target "products"."""
    if scope not in SCOPES:
        raise ValueError(f"unknown sync scope {scope!r}; use one of {', '.join(SCOPES)}")
    job_type = RETRY_FAILED_SYNC if scope == "failed" else PRODUCT_SYNC
    params = {"scope": scope, "ids": list(ids or []), "prices": prices,
              **({"target": "products"} if job_type == RETRY_FAILED_SYNC else {})}
    job = jobs.create_job(job_type, params=params, started_by=started_by, user=user, retry_of=retry_of,
                          metadata={"scope": scope, "prices": prices})
    return jobs.launch(job, run_now=run_now, start_now=start_now)


def _restart(*, params, started_by, user, retry_of=None, force_restart=False) -> BackgroundJob:
    return start_product_sync(**params, started_by=started_by, user=user, retry_of=retry_of)


def run_sync_job(ctx: jobs.JobContext) -> None:
    p = ctx.params
    totals = sync_products(ctx, scope=p.get("scope", "all"), ids=p.get("ids"), prices=p.get("prices"))
    if totals.failed and not (totals.synced or totals.levels_sent):
        raise RuntimeError(f"every mapping failed ({totals.failed}); first error: "
                           f"{totals.errors[0] if totals.errors else '?'}")


def register() -> None:
    from jobs.operations import RetryTarget, register_retry_target

    jobs.register_job_type(PRODUCT_SYNC, label="Sync stock to Shopify", run=run_sync_job, start=_restart,
                           result=ProductSyncResult, permission="products.sync_products")
    register_retry_target(RetryTarget("products", run=run_sync_job, permission="products.sync_products",
                                      label="Retry failed product syncs", result=ProductSyncResult,
                                      start=_restart))
