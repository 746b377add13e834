"""Pancake page customers on the pull framework: PULL_PANCAKE_CUSTOMERS in two modes, per enabled page (or one
page with ``--page-id``).

| mode        | progress id                               | window (Unix seconds, both ends inclusive)          |
|-------------|-------------------------------------------|-----------------------------------------------------|
| incremental | pancake_customers_incremental[_<page_id>] | newest stored updated_at (none: 30 days ago) → now  |
| backfill    | pancake_customers_backfill[_<page_id>]    | 0 → oldest stored updated_at (none: now), fixed     |

Both page through ``order_by=updated_at`` (newest first) with ``page_number``; incremental stops at the first
customer older than ``since`` or a short page, backfill skips customers newer than ``until`` and stops at a short
page. Incremental and backfill of a page have different ids and may run together; the same one twice may not.

Why the two converge while Pancake's list changes under them
-------------------------------------------------------------
Page-number paging reads positions, not rows. A customer updated while we page gets ``updated_at`` = Pancake's
now, which is after our ``until`` (fixed when the page's pass starts, ≤ Pancake's clock), so it *leaves* our
window: every row behind it moves one position forward, and the row that crosses into a page we already read
would be skipped by plain paging. New customers arrive at now too, outside the window, so they shift nothing.
The window can therefore only lose rows, in an order that never changes, and ``total`` (the rows in the window,
sent with every page) tells when some left. Then the page just read may have jumped over rows right after the
last page we trust, so we re-read from there: page 1 of the window ending at that page's oldest updated_at,
rounded up to the second (page 1 cannot shift; page numbers restart there; everything newer was read already and
the rows of that last second come again: re-reads are harmless, the upsert skips unchanged rows). When that
second is the window's own end, we step back by the rows that left instead. The pass's window itself never moves.
So within one pass no row that stays in the window is missed, and a row that left it has a newer updated_at,
after ``until``:
- incremental: the next run starts at the newest stored updated_at, which is ≤ this run's ``until``, so it reads
  every row that left (and anything newer);
- backfill: a row that left is newer than every row it could store, so it is in the incremental's window.
A row can enter a window only if Pancake's clock is behind ours (an update stamped ≤ until); ``total`` then
grows, and a results page can fail after its retries. Either makes the pass unclean: the page keeps
``incremental_floor`` / ``backfill_ceiling`` so the next run re-reads that whole window, and a clean run clears it.
Rows of the two jobs (and of overlapping runs) land through one upsert that keeps the newer version: under a
per-page lock it drops an incoming row older than the stored one, so a backfill that read a customer before an
update never overwrites what the incremental stored after it.

So after a backfill and an incremental that ran during changes, one more incremental once the changes stop
stores exactly Pancake's set: each row is read at its final version by the last run whose window holds it.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django import db, forms
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from integrations.clients import client_for
from integrations.errors import AuthRejected, UpstreamError
from integrations.pancake.client import MAX_PAGE_SIZE, parse_time
from jobs.errors import PullInputError
from jobs.ingest import ChildTable, upsert_records
from jobs.pull_specs import FilterField, PullMode, PullSpec, SourceRequest, register_pull_spec
from jobs.pulls import BatchResult, Page

from ..models import PancakeCustomer, PancakeCustomerPhone, PancakePage
from . import records

log = logging.getLogger(__name__)

SYSTEM, KIND, JOB_TYPE = "pancake", "customers", "PULL_PANCAKE_CUSTOMERS"
INCREMENTAL, BACKFILL = "incremental", "backfill"
FIRST_WINDOW = timedelta(days=30)
OLDEST_REREAD_EVERY = 10  # results pages
MAX_FAILED_IN_A_ROW = 3  # results pages failing one after another: give up on this Pancake page for this run
PAGE_LOCK_CLASS = 0x5B0B  # pg_advisory_xact_lock(class, hash(page_id)): one upsert per Pancake page at a time


# --- the stored marks -------------------------------------------------------------------------------------
def newest_stored(page_id: str) -> datetime | None:
    return PancakeCustomer.objects.filter(page_id=page_id).aggregate(t=Max("upstream_updated_at"))["t"]


def oldest_stored(page_id: str) -> datetime | None:
    return PancakeCustomer.objects.filter(page_id=page_id).aggregate(t=Min("upstream_updated_at"))["t"]


def _seconds(t: datetime) -> int:
    return math.floor(t.timestamp())


def window_for(page: PancakePage, mode: str, now: datetime) -> tuple[int, int]:
    """[since, until] in Unix seconds for one page's pass."""
    if mode == INCREMENTAL:
        since = newest_stored(page.page_id)
        if since is None:
            since = now - FIRST_WINDOW
        if page.incremental_floor is not None:
            since = min(since, page.incremental_floor)
        return _seconds(since), _seconds(now)
    oldest = oldest_stored(page.page_id)
    until = _seconds(oldest) + 1 if oldest is not None else _seconds(now)  # +1: the oldest's own fraction
    if page.backfill_ceiling is not None:
        until = max(until, _seconds(page.backfill_ceiling))
    return 0, until


def finish_pass(page_id: str, mode: str, *, clean: bool, since: int, until: int) -> None:
    """Record whether the pass may have missed rows: an unclean one leaves the floor (ceiling) for the next."""
    page = PancakePage.objects.get(page_id=page_id)
    if mode == INCREMENTAL:
        floor = None if clean else min(filter(None, [page.incremental_floor,
                                                     datetime.fromtimestamp(since, tz=UTC)]))
        PancakePage.objects.filter(pk=page.pk).update(incremental_floor=floor)
    else:
        ceiling = None if clean else max(filter(None, [page.backfill_ceiling,
                                                       datetime.fromtimestamp(until, tz=UTC)]))
        PancakePage.objects.filter(pk=page.pk).update(backfill_ceiling=ceiling)


# --- page tokens --------------------------------------------------------------------------------------------
class StoredPageAuth:
    """The page's token from the database; a rejected one is renewed under the page's row lock, so two runs of a
    page (incremental and backfill) that are refused together generate one new token, not two that invalidate
    each other."""

    def __init__(self, client, page_id: str):
        self.client, self.page_id = client, page_id

    def token(self) -> str:
        tokens = PancakePage.objects.filter(page_id=self.page_id).values_list("page_access_token", flat=True)
        return tokens.first() or ""

    def renew(self, rejected: str) -> str:
        with transaction.atomic():
            page = PancakePage.objects.select_for_update().get(page_id=self.page_id)
            if page.page_access_token and page.page_access_token != rejected:
                return page.page_access_token  # another run renewed it meanwhile
            token = self.client.generate_page_token(self.page_id, page.user_access_token)
            PancakePage.objects.filter(pk=page.pk).update(page_access_token=token, token_renewed_at=timezone.now())
        log.info("pancake page %s: page token renewed from the user token", self.page_id)
        return token


# --- the source -----------------------------------------------------------------------------------------
@dataclass
class PassReport:
    """Per Pancake page: shown in the job's metadata under ``pancake_pages``."""

    since: int
    until: int
    results_pages: int = 0
    rows: int = 0
    reread_pages: int = 0
    failed_results_pages: int = 0
    unparseable_times: int = 0
    skipped_newer: int = 0
    oldest_stored: str | None = None
    stopped: str = ""
    errors: list[str] = field(default_factory=list)


class PancakeCustomerSource:
    """Pages of customers of every page in ``page_ids``, one Pancake page after the other. The cursor (the
    framework's checkpoint) names the pages done and where the current one is, window included, so a resumed run
    continues the same fixed window."""

    def __init__(self, client, mode: str, page_ids: list[str], page_size: int = MAX_PAGE_SIZE):
        self.client, self.mode, self.page_ids, self.page_size = client, mode, page_ids, page_size
        self.reports: dict[str, dict] = {}
        self._made_on = threading.current_thread()

    def pages(self, cursor) -> Iterator[Page]:
        cursor = dict(cursor or {})
        done = list(cursor.get("done", []))
        self.reports = dict(cursor.get("reports", {}))
        try:
            for page_id in self.page_ids:
                if page_id in done:
                    continue
                resume = cursor if cursor.get("page_id") == page_id else None
                yield from self._one_page(page_id, resume, done)
                done.append(page_id)
            yield Page([], None, progress={"pancake_pages": copy.deepcopy(self.reports)})
        finally:
            if threading.current_thread() is not self._made_on:
                db.connection.close()  # the engine's fetcher thread: leave no connection behind

    def _one_page(self, page_id: str, resume: dict | None, done: list[str]) -> Iterator[Page]:
        page = PancakePage.objects.filter(page_id=page_id).first()
        if page is None:
            return
        if resume:  # a resumed run keeps its window and where it was in it
            since, until = resume["since"], resume["until"]
            query_until, number, expected = resume["query_until"], resume["page_number"], resume.get("total")
            trusted, clean = resume.get("trusted"), resume.get("clean", True)
            report = PassReport(**{**self.reports.get(page_id, {}), "since": since, "until": until})
        else:
            since, until = window_for(page, self.mode, timezone.now())
            query_until, number, expected, trusted, clean = until, 1, None, None, True
            report = PassReport(since=since, until=until)
        auth = StoredPageAuth(self.client, page_id)
        failed_in_a_row = 0

        def checkpoint(rows):
            self.reports[page_id] = report.__dict__.copy()
            # Copies: the page waits in the engine's queue while this generator goes on changing these.
            reports = copy.deepcopy(self.reports)
            after = {"done": list(done), "page_id": page_id, "page_number": number, "since": since, "until": until,
                     "query_until": query_until, "total": expected, "trusted": trusted, "clean": clean,
                     "reports": reports}
            return Page(rows, after, progress={"pancake_pages": reports})

        while True:
            if self.mode == BACKFILL and report.results_pages % OLDEST_REREAD_EVERY == 0:
                # Shown as how far back the backfill has reached. ``until`` stays fixed on purpose: moving it while
                # page numbers go on shifts the window under them (the original skipped rows that way).
                oldest = oldest_stored(page_id)
                report.oldest_stored = oldest.isoformat() if oldest else None
            try:
                answer = self.client.page_customers(auth, page_number=number, since=since, until=query_until,
                                                    page_size=self.page_size)
            except AuthRejected as exc:
                report.errors.append(f"page {page_id}: {exc}")
                report.stopped, clean = "token refused", False
                break
            except UpstreamError as exc:
                report.failed_results_pages += 1
                report.errors.append(f"page {page_id} results page {number}: {exc}")
                clean = False  # recorded; the pass goes on and the next run re-reads this window
                failed_in_a_row += 1
                if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                    report.stopped = f"{failed_in_a_row} results pages failed in a row"
                    break
                number += 1
                continue
            failed_in_a_row = 0
            report.results_pages += 1
            customers, total = answer["customers"], answer["total"]
            rows, stop, oldest_here = self._rows(page_id, customers, since, until, report)
            shifted = total is not None and expected is not None and total < expected and number > 1
            if total is not None and expected is not None and total > expected:
                clean = False  # rows entered the window (clocks apart): the next run re-reads all of it
            # A short page ends the window; so does a full one that reaches ``total`` (saves asking for an empty one).
            short = len(customers) < self.page_size or (total is not None and number * self.page_size >= total)
            if shifted and trusted is not None and math.ceil(trusted) < query_until:
                # Rows left the window ahead of us, so this page may have jumped over rows right after the last
                # page we trust. Re-read from there: page 1 of the window ending at that page's oldest row (rounded
                # up to whole seconds; page 1 cannot shift, the newer rows it repeats are harmless re-reads).
                report.reread_pages += 1
                query_until, number, expected, trusted = math.ceil(trusted), 1, None, None
                yield checkpoint(rows)
                continue
            if shifted:
                # The last trusted page ends in the window's last second: no narrower window. Step back by the rows
                # that left instead (they can only have shifted the rest forward by that many positions).
                report.reread_pages += 1
                back = math.ceil((expected - total) / self.page_size)
                number, expected = max(number - back, 1), total
                yield checkpoint(rows)
                continue
            expected = total if total is not None else expected
            if oldest_here is not None:
                trusted = oldest_here
            if stop or short:
                report.stopped = report.stopped or ("older than since" if stop else "short page")
                number += 1
                yield checkpoint(rows)
                break
            number += 1
            yield checkpoint(rows)
        finish_pass(page_id, self.mode, clean=clean, since=since, until=until)
        self.reports[page_id] = report.__dict__.copy()

    def _rows(self, page_id: str, customers: list, since: int, until: int, report: PassReport):
        """(rows to upsert, stop: a row older than since was met, the oldest parseable time on the page)."""
        rows, stop, oldest = [], False, None
        for raw in customers:
            if not isinstance(raw, dict):
                rows.append(raw)  # the upsert counts it as malformed
                continue
            raw = {**raw, "page_id": page_id}  # not always in the payload; the page we asked is the truth
            try:
                seconds = parse_time(raw.get("updated_at")).timestamp()
            except ValueError:
                report.unparseable_times += 1
                rows.append(raw)  # counted and reported by the upsert, not fatal
                continue
            oldest = seconds if oldest is None else min(oldest, seconds)
            if self.mode == INCREMENTAL and seconds < since:
                stop = True  # newest first: everything after this is older than since
                break
            if self.mode == BACKFILL and seconds >= until + 1:
                report.skipped_newer += 1  # newer than the run's fixed until: the incremental's business
                continue
            rows.append(raw)
        report.rows += len(rows)
        return rows, stop, oldest


# --- the upsert ---------------------------------------------------------------------------------------------
def _lock_pages(page_ids: set[str]) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the batch's transaction holds the database's write lock already
    with connection.cursor() as cur:
        for page_id in sorted(page_ids):  # one order everywhere: two batches never wait on each other
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                        [PAGE_LOCK_CLASS, zlib.crc32(page_id.encode()) - 2**31])


def upsert_pancake_customers(rows: list[dict]) -> BatchResult:
    """Upsert keyed by (page_id, psid), phones into the child table; an incoming row older than the stored version
    of that customer (read before an update another run already stored) is skipped, never written over it."""
    keys = {key for key in map(records.pancake_key, rows) if key is not None}
    _lock_pages({raw["page_id"] for raw in rows if isinstance(raw, dict) and raw.get("page_id")})
    stored = dict(PancakeCustomer.objects.filter(key__in=list(keys)).values_list("key", "upstream_updated_at"))
    fresh, stale = [], 0
    for raw in rows:
        key = records.pancake_key(raw)
        if key in stored and stored[key] is not None:
            try:
                if parse_time(raw.get("updated_at")) < stored[key]:
                    stale += 1
                    continue
            except ValueError:
                pass
        fresh.append(raw)
    result = upsert_records(fresh, model=PancakeCustomer, key="key", key_of=records.pancake_key,
                            parse=records.pancake_customer, children=ChildTable(PancakeCustomerPhone, "customer_id"))
    result.skipped += stale
    return result


# --- the spec -----------------------------------------------------------------------------------------------
def _page_id(value) -> str | None:
    if value in (None, ""):
        return None
    page_id = str(value).strip()
    if not page_id.isdigit() or len(page_id) > 64:
        raise PullInputError(gettext("a Pancake page id is digits, not %(value)r") % {"value": value})
    if not PancakePage.objects.filter(page_id=page_id).exists():
        raise PullInputError(gettext("no Pancake page %(page)s; add it under Pancake → Pancake pages")
                             % {"page": page_id})
    return page_id


def _progress_id(mode: PullMode, filters: dict) -> str:
    page_id = filters.get("page_id")
    return f"{SYSTEM}_{KIND}_{mode.name}" + (f"_{page_id}" if page_id else "")


def page_ids_for(filters: dict) -> list[str]:
    if filters.get("page_id"):
        return [filters["page_id"]]
    return list(PancakePage.objects.filter(enabled=True).order_by("page_id").values_list("page_id", flat=True))


def source(request: SourceRequest) -> PancakeCustomerSource:
    return PancakeCustomerSource(request.client, request.mode, page_ids_for(request.filters))


def _after_run(ctx, client) -> None:
    ctx.set_metadata(tokens_renewed=client.tokens_renewed, rate_slowdowns=client.limiter.slowdowns,
                     final_rate=round(client.limiter.rate, 2), retries=client.retries)


SPEC = PullSpec(
    system=SYSTEM, kind=KIND, system_label="Pancake", job_type=JOB_TYPE, label=_("Pull Pancake customers"),
    modes=(
        PullMode(INCREMENTAL, _("New / updated since the newest stored (first time: 30 days), every enabled page"),
                 filters=("page_id",)),
        PullMode(BACKFILL, _("Backfill: older than the oldest stored, every enabled page"), filters=("page_id",)),
    ),
    filters=(FilterField("page_id", _page_id, cli_flag="--page-id", help="Pancake: one page id (default: every "
                         "enabled page)", form_name="page_id",
                         form_field=lambda: forms.CharField(required=False, max_length=64, label=_("Page id"),
                                                            help_text=_("Empty: every enabled page."))),),
    default_mode=INCREMENTAL, demo_mode=INCREMENTAL, progress_id_of=_progress_id,
    client=lambda: client_for(SYSTEM), source=source, upsert=upsert_pancake_customers, after_run=_after_run,
)


def register() -> None:
    register_pull_spec(SPEC)
