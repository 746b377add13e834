"""Customer pulls from Nhanh and Shopify: the six pull types of the spec, as tracked, claimed jobs.

| mode (system)      | progress id                        | runs        |
|--------------------|------------------------------------|-------------|
| limit (nhanh)      | nhanh_customers_limit              | in the call (the next 5,000 rows each time) |
| new (nhanh)        | nhanh_customers_new                | in the call (since the last success; first: 24 h) |
| all (nhanh)        | nhanh_customers                    | background  |
| filtered (nhanh)   | nhanh_customers_<hash(filters)>    | background  |
| all (shopify)      | shopify_customers                  | background  |
| query (shopify)    | shopify_customers_<hash(query)>    | background  |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.models import System, get_connection
from jobs import services as jobs
from jobs.models import BackgroundJob, JobType, StartedBy
from jobs.pulls import BatchResult, Page, run_pull

from ..models import NhanhCustomer, NhanhCustomerPhone, PullMark, ShopifyCustomer, ShopifyCustomerPhone
from . import records
from .upsert import upsert_records

NHANH_MODES = ("all", "new", "limit", "filtered")
SHOPIFY_MODES = ("all", "query")
SYNCHRONOUS_MODES = ("new", "limit")
NEW_PULL_FIRST_WINDOW = timedelta(hours=24)
NEW_PULL_OVERLAP = timedelta(minutes=5)  # re-read a little: clocks differ and rows land late
JOB_TYPES = {System.NHANH: JobType.PULL_NHANH_CUSTOMERS, System.SHOPIFY: JobType.PULL_SHOPIFY_CUSTOMERS}


class PullInputError(ValueError):
    """The pull request itself is wrong (unknown mode, bad date…): shown to staff as is."""


@dataclass
class PullStarted:
    job: BackgroundJob
    progress_id: str
    resumed: bool
    synchronous: bool


# --- input ------------------------------------------------------------------------------------------
def _date(value, what: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise PullInputError(f"{what} must be a date like 2024-01-31, not {value!r}") from None


def nhanh_filters(*, customer_type=None, last_bought_from=None, last_bought_to=None) -> dict:
    """Canonical Nhanh filters (v3 names); the same choices always give the same dict (and progress id)."""
    filters: dict[str, Any] = {}
    if customer_type not in (None, ""):
        try:
            filters["type"] = int(customer_type)
        except ValueError:
            raise PullInputError(f"customer type must be 1, 2 or 3, not {customer_type!r}") from None
        if filters["type"] not in (1, 2, 3):
            raise PullInputError("customer type must be 1 (retail), 2 (wholesale) or 3 (agent)")
    if d := _date(last_bought_from, "last bought from"):
        filters["lastBoughtDateFrom"] = d
    if d := _date(last_bought_to, "last bought to"):
        filters["lastBoughtDateTo"] = d
    if filters.get("lastBoughtDateFrom", "") > filters.get("lastBoughtDateTo", "9999"):
        raise PullInputError("'last bought from' is after 'last bought to'")
    return filters


def _progress_id(system: str, mode: str, filters: dict, query: str) -> str:
    if mode in ("new", "limit"):
        return f"{system}_customers_{mode}"
    if mode == "query":
        return jobs.make_progress_id(system, "customers", {"query": query})
    return jobs.make_progress_id(system, "customers", filters)


# --- starting -----------------------------------------------------------------------------------------
def start_customer_pull(
    system: str,
    mode: str = "all",
    *,
    filters: dict | None = None,
    query: str | None = None,
    force_restart: bool = False,
    started_by: str = StartedBy.SYSTEM,
    user=None,
    retry_of: BackgroundJob | None = None,
    start_now: bool = True,
) -> PullStarted:
    """Claim the pull and start it: synchronous modes run here and return finished, the others are
    queued (``start_now=False``: claimed but left for the caller to run, e.g. ``pull --wait``).
    Raises PullInputError for a bad request and jobs.PullRefused when the pull may not start."""
    filters = dict(filters or {})
    query = (query or "").strip()
    if system == System.NHANH:
        if mode not in NHANH_MODES:
            raise PullInputError(f"Nhanh customer pulls are {', '.join(NHANH_MODES)}, not {mode!r}")
        filters = nhanh_filters(customer_type=filters.get("type"),
                                last_bought_from=filters.get("lastBoughtDateFrom"),
                                last_bought_to=filters.get("lastBoughtDateTo"))
        if mode == "filtered" and not filters:
            raise PullInputError("a filtered pull needs at least one filter (type or last-bought dates)")
        if mode != "filtered":
            filters = {}
    elif system == System.SHOPIFY:
        if mode not in SHOPIFY_MODES:
            raise PullInputError(f"Shopify customer pulls are {', '.join(SHOPIFY_MODES)}, not {mode!r}")
        if mode == "query" and not query:
            raise PullInputError("a Shopify query pull needs a search query, e.g. state:ENABLED")
        filters = {}
        if mode == "all":
            query = ""
    else:
        raise PullInputError(f"no customer pulls for {system!r}")
    progress_id = _progress_id(system, mode, filters, query)
    claim = jobs.claim_pull(
        system=system, kind="customers", filters=filters or ({"query": query} if query else {}),
        job_type=JOB_TYPES[system], params={"system": system, "mode": mode, "filters": filters, "query": query},
        started_by=started_by, user=user, force_restart=force_restart, retry_of=retry_of, progress_id=progress_id,
    )
    synchronous = mode in SYNCHRONOUS_MODES and start_now
    if synchronous:
        jobs.run_job(claim.job.pk)
        claim.job.refresh_from_db()
    elif start_now:
        jobs.enqueue(claim.job)
    return PullStarted(job=claim.job, progress_id=progress_id, resumed=claim.resumed, synchronous=synchronous)


def _restart(*, params, started_by, user, retry_of=None, force_restart=False) -> BackgroundJob:
    """Retry/force-restart entry for the job registry: start the same pull again."""
    return start_customer_pull(params["system"], params["mode"], filters=params.get("filters"),
                               query=params.get("query"), force_restart=force_restart, started_by=started_by,
                               user=user, retry_of=retry_of).job


# --- sources ------------------------------------------------------------------------------------------
class NhanhCustomerSource:
    def __init__(self, client, filters: dict, *, start=None):
        # ``start``: where a fresh run begins (the capped pull continues from its mark); a resumed run
        # passes its checkpoint cursor to pages() instead.
        self.client, self.filters, self.start = client, filters, start

    def pages(self, cursor) -> Iterator[Page]:
        position = cursor if cursor is not None else self.start
        for rows, next_cursor in self.client.iter_customer_pages(self.filters, start_cursor=position):
            yield Page(rows, next_cursor)


class ShopifyCustomerSource:
    def __init__(self, client, query: str | None):
        self.client, self.query = client, query or None

    def pages(self, cursor) -> Iterator[Page]:
        # Sorted by ID: stable while customers change mid-pull (UPDATED_AT order would shift under us).
        for nodes, end_cursor, has_next in self.client.iter_customer_pages(self.query, after=cursor):
            yield Page(nodes, end_cursor if has_next else None)


def client_options() -> dict:
    s = settings.SHOPBRIDGE
    return {"max_attempts": s["HTTP_MAX_ATTEMPTS"], "backoff_base": s["HTTP_BACKOFF_BASE"],
            "backoff_max": s["HTTP_BACKOFF_MAX"]}


def nhanh_client():
    from integrations.nhanh.client import NhanhClient

    return NhanhClient.from_connection(get_connection(System.NHANH), **client_options())


def shopify_client():
    from integrations.shopify.client import ShopifyClient

    return ShopifyClient.from_connection(get_connection(System.SHOPIFY), **client_options())


def upsert_nhanh_customers(rows: list[dict]) -> BatchResult:
    return upsert_records(rows, model=NhanhCustomer, key="nhanh_id", key_of=records.nhanh_key,
                          parse=records.nhanh_customer, phone_model=NhanhCustomerPhone)


def upsert_shopify_customers(rows: list[dict]) -> BatchResult:
    return upsert_records(rows, model=ShopifyCustomer, key="shopify_id", key_of=records.shopify_key,
                          parse=records.shopify_customer, phone_model=ShopifyCustomerPhone)


def _set_mark(key: str, value: dict) -> None:
    PullMark.objects.update_or_create(key=key, defaults={"value": value})


def _mark(key: str) -> dict:
    mark = PullMark.objects.filter(key=key).first()
    return mark.value if mark else {}


# --- running (registered job handlers) -------------------------------------------------------------------
def run_nhanh_customer_pull(ctx: jobs.JobContext) -> None:
    mode = ctx.params["mode"]
    source_filters, start, limit = dict(ctx.params.get("filters") or {}), None, None
    mark = None  # (key, value from the resume cursor), saved once the pull has completed
    if mode == "new":
        # From the last successful pull's mark (re-reading a little), first time the last 24 h; the mark
        # moves only when this pull completes.
        previous = _mark("nhanh_customers_new").get("updated_to")
        now = timezone.now()
        since = (datetime.fromtimestamp(previous, tz=UTC) - NEW_PULL_OVERLAP if previous
                 else now - NEW_PULL_FIRST_WINDOW)
        until = int(now.timestamp())
        source_filters = {"updatedAtFrom": int(since.timestamp()), "updatedAtTo": until}
        mark = ("nhanh_customers_new", lambda _cursor: {"updated_to": until})
        ctx.set_metadata(window={"from": since.isoformat(), "to": now.isoformat()})
    elif mode == "limit":
        # The next N customers after where the previous capped pull stopped.
        limit = settings.SHOPBRIDGE["PULL_LIMIT_SYNC"]
        start = _mark("nhanh_customers_limit").get("cursor")
        mark = ("nhanh_customers_limit", lambda cursor: {"cursor": cursor})
        ctx.set_metadata(limit=limit, continues_from=start)

    def on_complete(_totals, resume_cursor):
        if mark:
            _set_mark(mark[0], mark[1](resume_cursor))

    client = nhanh_client()
    try:
        run_pull(ctx, source=NhanhCustomerSource(client, source_filters, start=start),
                 upsert=upsert_nhanh_customers, limit=limit, on_complete=on_complete)
    finally:
        client.close()


def run_shopify_customer_pull(ctx: jobs.JobContext) -> None:
    client = shopify_client()
    try:
        if ctx.params.get("query"):
            ctx.set_metadata(query=ctx.params["query"])
        run_pull(ctx, source=ShopifyCustomerSource(client, ctx.params.get("query")),
                 upsert=upsert_shopify_customers)
    finally:
        client.close()
    ctx.set_metadata(api_cost=getattr(client, "cost_spent", None))


def register() -> None:
    jobs.register_job_type(JobType.PULL_NHANH_CUSTOMERS, run=run_nhanh_customer_pull, start=_restart)
    jobs.register_job_type(JobType.PULL_SHOPIFY_CUSTOMERS, run=run_shopify_customer_pull, start=_restart)


def start_demo_pulls(started_by: str = StartedBy.COMMAND) -> list[str]:
    lines = []
    for system in (System.NHANH, System.SHOPIFY):
        try:
            started = start_customer_pull(system, "all", started_by=started_by)
        except jobs.PullRefused as exc:
            lines.append(f"{system} customers not pulled: {exc}")
        else:
            lines.append(f"Queued {system} customer pull, job #{started.job.pk}.")
    return lines
