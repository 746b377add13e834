"""Write each matched customer's Nhanh lifetime total (and the tier it implies) onto the Shopify customer
as metafields, with ``metafieldsSet``: up to 25 metafields a call, all-or-nothing per call.

Two metafields per customer → 12 customers per call. When a call fails on one value, Shopify names it
(``elementIndex``); those customers are set aside with Shopify's userErrors verbatim and the rest of the
batch is sent again. Without an index the batch is split in halves until the culprits are alone. The
client paces itself by the cost Shopify reports; there are no sleeps here.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from integrations.clients import client_for
from integrations.status import HeldOutcomes
from jobs import services as jobs
from jobs.models import BackgroundJob, StartedBy

from ..job_types import CustomerJobType
from ..models import CustomerMapping, LoyaltyTier, NhanhCustomer, SyncStatus
from . import mappings

log = logging.getLogger(__name__)

METAFIELDS_PER_CALL = 25
CUSTOMERS_PER_CALL = METAFIELDS_PER_CALL // 2
SCOPES = ("all", "ids", "changed", "failed")


@dataclass(frozen=True)
class Loyalty:
    namespace: str
    total_key: str
    tier_key: str
    min_change: int
    tiers: tuple[tuple[int, str], ...]  # (min_total, name), ascending

    @classmethod
    def current(cls) -> Loyalty:
        s = settings.SHOPBRIDGE
        tiers = tuple(LoyaltyTier.objects.order_by("min_total").values_list("min_total", "name"))
        return cls(s["LOYALTY_NAMESPACE"], s["LOYALTY_TOTAL_KEY"], s["LOYALTY_TIER_KEY"], s["LOYALTY_MIN_CHANGE"],
                   tiers)

    @staticmethod
    def metafields_read() -> tuple[tuple[str, str, str], ...]:
        """What a customer pull reads back: (alias, namespace, key) of the two metafields this sync writes."""
        s = settings.SHOPBRIDGE
        return (("totalSpent", s["LOYALTY_NAMESPACE"], s["LOYALTY_TOTAL_KEY"]),
                ("loyalty", s["LOYALTY_NAMESPACE"], s["LOYALTY_TIER_KEY"]))

    def tier_for(self, total: int) -> str:
        name = ""
        for min_total, tier_name in self.tiers:
            if total >= min_total:
                name = tier_name
        return name

    def metafields(self, owner_gid: str, total: int, tier: str) -> list[dict]:
        fields = [{"ownerId": owner_gid, "namespace": self.namespace, "key": self.total_key,
                   "type": "number_integer", "value": str(int(total))}]
        if tier:
            fields.append({"ownerId": owner_gid, "namespace": self.namespace, "key": self.tier_key,
                           "type": "single_line_text_field", "value": tier})
        return fields


@dataclass
class SyncTotals:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    created: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped + self.created


@dataclass
class _Item:
    mapping: CustomerMapping
    total: int
    tier: str
    error: str = ""


def mappings_in_scope(scope: str, ids: Iterable[int] | None = None):
    """Active mappings of a scope ("changed" is every active one; ``needing_send`` narrows it)."""
    qs = CustomerMapping.objects.filter(is_active=True)
    if scope == "ids":
        qs = qs.filter(pk__in=list(ids or []))
    elif scope == "failed":
        qs = qs.filter(sync_status=SyncStatus.FAILED)
    elif scope not in ("all", "changed"):
        raise ValueError(f"unknown sync scope {scope!r}; use one of {SCOPES}")
    return qs.select_related("nhanh_customer", "shopify_customer").order_by("pk")


def needing_send(qs):
    """The one definition of "changed": never synced or not synced now, the total moved by at least the
    threshold since it was sent, or the tier it implies (thresholds are edited in the admin) is not the one
    sent. In SQL, so an unforced sync of 200k mappings reads only those."""
    step = settings.SHOPBRIDGE["LOYALTY_MIN_CHANGE"]
    implied_tier = Subquery(LoyaltyTier.objects.filter(min_total__lte=OuterRef("nhanh_customer__total_spent"))
                            .order_by("-min_total").values("name")[:1])
    return qs.annotate(implied_tier=Coalesce(implied_tier, Value(""))).filter(
        Q(last_sent_total__isnull=True) | ~Q(sync_status=SyncStatus.SYNCED)
        | Q(nhanh_customer__total_spent__gte=F("last_sent_total") + step)
        | Q(nhanh_customer__total_spent__lte=F("last_sent_total") - step)
        | ~Q(last_sent_tier=F("implied_tier"))
    )


def _send(client, items: list[_Item], loyalty: Loyalty) -> int:
    """Send one call's worth; on a userError, set the culprits aside and send the others again.
    Runs on a sender thread: it only marks the items; the job's thread records them. Returns the calls made."""
    if not items:
        return 0
    inputs, owners = [], []
    for index, item in enumerate(items):
        for metafield in loyalty.metafields(item.mapping.shopify_customer.gid, item.total, item.tier):
            inputs.append(metafield)
            owners.append(index)
    _written, user_errors = client.metafields_set(inputs)
    if not user_errors:
        return 1
    indexed = [e for e in user_errors if isinstance(e.get("elementIndex"), int) and e["elementIndex"] < len(owners)]
    if indexed and len(indexed) == len(user_errors):
        culprits: dict[int, list[dict]] = {}
        for error in indexed:
            culprits.setdefault(owners[error["elementIndex"]], []).append(error)
        for index, errors in culprits.items():
            items[index].error = json.dumps(errors, ensure_ascii=False)
        return 1 + _send(client, [item for i, item in enumerate(items) if i not in culprits], loyalty)
    if len(items) == 1:
        items[0].error = json.dumps(user_errors, ensure_ascii=False)
        return 1
    middle = len(items) // 2  # Shopify did not say which value: halve until the culprit is alone
    return 1 + _send(client, items[:middle], loyalty) + _send(client, items[middle:], loyalty)


def _record(items: list[_Item], totals: SyncTotals, keep_errors: int) -> None:
    """One bulk UPDATE per batch: what was sent, or Shopify's errors verbatim."""
    now = timezone.now()
    for item in items:
        m = item.mapping
        m.sync_attempts += 1
        if item.error:
            m.sync_status, m.last_error = SyncStatus.FAILED, item.error
            totals.failed += 1
            if len(totals.errors) < keep_errors:
                totals.errors.append(f"Shopify customer {m.shopify_customer.shopify_id}: {item.error}")
        else:
            m.sync_status, m.last_error, m.synced_at = SyncStatus.SYNCED, "", now
            m.last_sent_total, m.last_sent_tier = item.total, item.tier
            totals.sent += 1
    CustomerMapping.objects.bulk_update(
        [i.mapping for i in items],
        ["sync_status", "last_error", "synced_at", "last_sent_total", "last_sent_tier", "sync_attempts"],
    )


def sync_customers(ctx: jobs.JobContext | None, *, scope: str = "all", ids=None, force: bool = False,
                   create_missing: bool | None = None, client=None, concurrency: int | None = None) -> SyncTotals:
    loyalty = Loyalty.current()
    concurrency = max(1, concurrency or settings.SHOPBRIDGE["SYNC_CONCURRENCY"])
    keep_errors = settings.SHOPBRIDGE["ERROR_EXAMPLES_KEPT"]
    in_scope = mappings_in_scope(scope, ids)
    qs = in_scope if force and scope != "changed" else needing_send(in_scope)
    totals = SyncTotals()
    call_outcomes = HeldOutcomes()  # the senders' upstream health, written on this thread
    own_client = client is None
    client = client or client_for("shopify")
    try:
        total = qs.count()
        totals.skipped = in_scope.count() - total
        if ctx:
            ctx.progress(total=total, metadata={"scope": scope, "force": force})
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sync") as senders:
            in_flight: deque[tuple[Future, list[_Item]]] = deque()
            batch: list[_Item] = []
            for mapping in qs.iterator(chunk_size=2000):
                batch.append(_Item(mapping, mapping.nhanh_customer.total_spent,
                                   loyalty.tier_for(mapping.nhanh_customer.total_spent)))
                if len(batch) == CUSTOMERS_PER_CALL:
                    in_flight.append((senders.submit(call_outcomes.run, _send, client, batch, loyalty), batch))
                    batch = []
                    # A few calls in flight hide Shopify's latency; the client's pacing keeps them in budget.
                    while len(in_flight) > concurrency:
                        _settle(*in_flight.popleft(), totals, keep_errors, ctx, call_outcomes)
            if batch:
                in_flight.append((senders.submit(call_outcomes.run, _send, client, batch, loyalty), batch))
            while in_flight:
                _settle(*in_flight.popleft(), totals, keep_errors, ctx, call_outcomes)
        if create_missing if create_missing is not None else settings.SHOPBRIDGE["SYNC_CREATE_MISSING_CUSTOMERS"]:
            create_missing_customers(client, loyalty, totals, keep_errors, ctx)
        if ctx:
            ctx.progress(total=max(total, totals.processed), **_counts(totals),
                         metadata={**_summary(totals), "api_cost": getattr(client, "cost_spent", None),
                                   "concurrency": concurrency})
    finally:
        if own_client:
            client.close()
    return totals


def _settle(future: Future, batch: list[_Item], totals: SyncTotals, keep_errors: int, ctx,
            call_outcomes: HeldOutcomes) -> None:
    """Wait for one batch's calls, then record it (on the job's thread: the database stays on one thread)."""
    try:
        totals.calls += future.result()
    finally:
        call_outcomes.write()
    _record(batch, totals, keep_errors)
    if ctx:
        ctx.progress(**_counts(totals), metadata=_summary(totals))


def _counts(totals: SyncTotals) -> dict:
    return {"processed": totals.processed, "successful": totals.sent + totals.skipped + totals.created,
            "failed": totals.failed}


@dataclass
class SyncResult:
    """What a sync job reports (``jobs.results.result_of``)."""

    sent: int = 0
    skipped: int = 0
    failed_customers: int = 0
    calls: int = 0
    created: int = 0
    errors: list[str] = field(default_factory=list)
    api_cost: int | None = None
    scope: str = ""
    force: bool = False


def _summary(totals: SyncTotals) -> dict:
    return {"sent": totals.sent, "skipped": totals.skipped, "failed_customers": totals.failed,
            "calls": totals.calls, "created": totals.created, "errors": totals.errors}


def create_missing_customers(client, loyalty: Loyalty, totals: SyncTotals, keep_errors: int, ctx) -> None:
    """Optional: a Shopify customer for each unmapped Nhanh customer with a phone or an email."""
    from customers.phones import normalize_phone

    candidates = (NhanhCustomer.objects.filter(mapping__isnull=True)
                  .annotate(n_phones=Count("phones")).filter(Q(n_phones__gt=0) | ~Q(email="")).order_by("pk"))
    for nhanh in candidates.iterator(chunk_size=500):
        family, _, given = nhanh.name.partition(" ")
        tier = loyalty.tier_for(nhanh.total_spent)
        data = {"lastName": family, "firstName": given, "tags": ["nhanh"],
                "metafields": [{k: v for k, v in m.items() if k != "ownerId"}
                               for m in loyalty.metafields("", nhanh.total_spent, tier)]}
        if phone := normalize_phone(nhanh.mobile):
            data["phone"] = phone
        if nhanh.email:
            data["email"] = nhanh.email
        totals.calls += 1
        customer, user_errors = client.customer_create(data)
        if user_errors or not customer:
            totals.failed += 1
            if len(totals.errors) < keep_errors:
                totals.errors.append(f"Nhanh customer {nhanh.nhanh_id}: {json.dumps(user_errors, ensure_ascii=False)}")
            continue
        legacy = int(customer.get("legacyResourceId") or str(customer["id"]).rsplit("/", 1)[-1])
        mapped = mappings.map_created_customer(
            nhanh, legacy, {"first_name": given, "last_name": family, "email": nhanh.email,
                            "phone": data.get("phone", ""), "raw": customer},
            total=nhanh.total_spent, tier=tier)
        if mapped is None:
            totals.skipped += 1  # mapped meanwhile (staff, or a concurrent run): theirs stands
            continue
        totals.created += 1
        if ctx and totals.created % 20 == 0:
            ctx.progress(**_counts(totals))


# --- as jobs ------------------------------------------------------------------------------------------------
def start_sync(*, scope: str = "all", ids=None, force: bool | None = None, started_by: str = StartedBy.SYSTEM,
               user=None, retry_of: BackgroundJob | None = None, run_now: bool = False, start_now: bool = True,
               create_missing: bool | None = None, **_ignored) -> BackgroundJob:
    """Queue a sync (``run_now``: run it here; ``start_now=False``: leave it for the caller to run).
    Manual syncs (a user or a command) force by default: staff asked for it now."""
    if scope not in SCOPES:
        raise ValueError(f"unknown sync scope {scope!r}; use one of {', '.join(SCOPES)}")
    if force is None:
        force = started_by in (StartedBy.USER, StartedBy.COMMAND)
    job_type = CustomerJobType.RETRY_FAILED_SYNC if scope == "failed" else CustomerJobType.CUSTOMER_SYNC
    params = {"scope": scope, "ids": list(ids or []), "force": force, "create_missing": create_missing,
              **({"target": "customers"} if job_type == CustomerJobType.RETRY_FAILED_SYNC else {})}
    job = jobs.create_job(job_type, params=params, started_by=started_by, user=user, retry_of=retry_of,
                          metadata={"scope": scope, "force": force})
    return jobs.launch(job, run_now=run_now, start_now=start_now)


def _restart(*, params, started_by, user, retry_of=None, force_restart=False) -> BackgroundJob:
    return start_sync(**params, started_by=started_by, user=user, retry_of=retry_of)


def run_sync_job(ctx: jobs.JobContext) -> None:
    p = ctx.params
    sync_customers(ctx, scope=p.get("scope", "all"), ids=p.get("ids"), force=bool(p.get("force")),
                   create_missing=p.get("create_missing"))


def register() -> None:
    from jobs.operations import RetryTarget, register_retry_target

    jobs.register_job_type(CustomerJobType.CUSTOMER_SYNC, label=_("Sync customers to Shopify"), run=run_sync_job,
                           start=_restart, result=SyncResult, permission="customers.sync_to_shopify")
    # RETRY_FAILED_SYNC is one job type for every app's syncs; this is what it does for customers.
    register_retry_target(RetryTarget("customers", run=run_sync_job, permission="customers.sync_to_shopify",
                                      label=_("Retry failed customer syncs"), result=SyncResult, start=_restart))
