"""The pull engine every pull uses (customers, products, Pancake …); it knows nothing of those apps.

A pull job holds its PullProgress (see ``claims.claim_pull``) and runs::

    run_pull(ctx, source=..., upsert=..., batch_size=1000, limit=None)

- ``source.pages(cursor)`` streams pages from the upstream, starting after ``cursor`` (None = start);
  each page carries the cursor to resume after it. A thread fetches the next page while this one is
  written (the fetcher does HTTP only; every database write stays on this thread).
- ``upsert(rows)`` writes one batch and returns a ``BatchResult``; it runs inside the transaction that
  also moves the checkpoint, so a resume never skips rows that were not committed.
- After each batch, the job's counts and metadata are written in their own short transaction; that is
  also where a cancel or a force restart is noticed.
- While the fetcher waits (a rate limit, a retry back-off), the heartbeat keeps beating so the pull is
  not taken for dead.
- A page without rows but with a cursor (a bulk operation still running upstream, say) is a checkpoint of its
  own: it is saved at once, with the page's ``progress`` shown on the job, so a resumed run re-attaches.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction

from .claims import holding_pull, pull_checkpoint
from .lifecycle import JobContext

log = logging.getLogger(__name__)

# While the upstream is slow: beat the heart, and notice a cancel or a worker shutting down, this often.
HEARTBEAT_EVERY_SECONDS = 3
# A slow upstream (Shopify's cost budget, Nhanh's rate limit) fills a batch slowly: write what has arrived at
# least this often, so staff see rows coming in and the checkpoint keeps up.
FLUSH_EVERY_SECONDS = 5


@dataclass
class Page:
    rows: list[dict]
    cursor_after: Any  # where to resume after this page; None when it was the last page
    progress: dict | None = None  # what the upstream says of its work (shown in the job's metadata)
    total: int | None = None  # rows the whole pull will bring, when the upstream can tell


@dataclass
class PullResult:
    """What a pull job reports (``jobs.results.result_of``): its row counts, pages and where it resumed."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    pages: int = 0
    resumed_from: dict | None = None
    window: dict | None = None  # an incremental pull's [from, to]
    limit: int | None = None  # a capped pull's cap


class PullSource(Protocol):
    def pages(self, cursor: Any) -> Iterator[Page]: ...


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # reasons for failed rows (first few kept)

    def add(self, other: BatchResult, keep_errors: int) -> None:
        self.created += other.created
        self.updated += other.updated
        self.skipped += other.skipped
        self.failed += other.failed
        room = keep_errors - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])

    @property
    def successful(self) -> int:
        return self.created + self.updated + self.skipped

    @property
    def processed(self) -> int:
        return self.successful + self.failed

    def as_counts(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "skipped": self.skipped, "failed": self.failed}


_END = object()


class _Prefetcher:
    """Runs ``source.pages`` one page ahead in a thread. Exceptions travel to the consumer."""

    def __init__(self, pages: Iterator[Page], depth: int = 2):
        self._pages = pages
        # Deep enough to keep fetching while a batch is written: pages wait here, bounded (~one batch).
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pull-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for page in self._pages:
                if not self._put(page):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which fails the job with it
            self._put(exc)
        finally:
            # A source may touch the database from here (a client renewing its shared token): that is this
            # thread's own connection, closed with it rather than left to the server's idle timeout.
            from django.db import connections

            connections.close_all()

    def get(self, timeout: float):
        item = self._queue.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self._stop.set()
        close = getattr(self._pages, "close", None)
        self._thread.join(timeout=5)
        if close and not self._thread.is_alive():
            close()


def run_pull(
    ctx: JobContext,
    *,
    source: PullSource,
    upsert: Callable[[list[dict]], BatchResult],
    batch_size: int | None = None,
    limit: int | None = None,
    on_complete: Callable[[BatchResult, Any], None] | None = None,
) -> BatchResult:
    """Run the pull to its end (or ``limit`` rows). ``on_complete(totals, resume_cursor)`` is called
    after the last batch committed; ``resume_cursor`` is where a capped pull would continue (None when
    the upstream's data ended)."""
    batch_size = batch_size or settings.SHOPBRIDGE["UPSERT_BATCH_SIZE"]
    keep_errors = settings.SHOPBRIDGE["ERROR_EXAMPLES_KEPT"]
    with holding_pull(ctx) as progress:
        pid, token = progress.progress_id, progress.run_token
        checkpoint = dict(progress.checkpoint or {})
        totals = BatchResult(**checkpoint.get("counts", {}))
        pages = int(checkpoint.get("pages", 0))
        cursor = checkpoint.get("cursor")
        if checkpoint:
            ctx.set_metadata(resumed_from={"cursor": cursor, "pages": pages, "rows": totals.processed})
            log.info("pull %s resumes after page %s (%s rows done)", pid, pages, totals.processed)
        # The fetcher thread waits on the network, then needs the GIL to read the answer; with the default
        # 5 ms switch interval it often waits behind this thread's CPU work, stalling the page chain.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, 0.001))
        fetcher = _Prefetcher(source.pages(cursor), depth=max(2, batch_size // 100))
        buffer: list[dict] = []
        last_beat = time.monotonic()
        finished = False
        resume_cursor = cursor
        try:
            while not finished:
                try:
                    page = fetcher.get(timeout=HEARTBEAT_EVERY_SECONDS)
                except queue.Empty:
                    # The fetcher is waiting on the upstream: show we are alive, notice a cancel.
                    pull_checkpoint(pid, token)
                    ctx.progress()
                    continue
                if page is _END:
                    finished = True
                    resume_cursor = None
                else:
                    pages += 1
                    before_page = cursor
                    if page.progress or page.total is not None:
                        ctx.progress(total=page.total, metadata=page.progress)
                    buffer.extend(page.rows)
                    cursor = resume_cursor = page.cursor_after
                    finished = cursor is None
                    if limit is not None and totals.processed + len(buffer) >= limit:
                        keep = max(limit - totals.processed, 0)
                        if keep < len(buffer):  # the cap cut this page: continue at its start next time
                            resume_cursor = before_page
                        buffer = buffer[:keep]
                        finished = True
                overdue = time.monotonic() - last_beat > FLUSH_EVERY_SECONDS
                marker = page is not _END and not page.rows and not finished  # save where the upstream is
                if (buffer and (len(buffer) >= batch_size or finished)) or overdue or marker:
                    _write_batch(ctx, pid, token, upsert, buffer, totals, keep_errors,
                                 cursor=None if finished else cursor, pages=pages)
                    buffer = []
                    last_beat = time.monotonic()
        finally:
            fetcher.close()
            sys.setswitchinterval(switch_interval)
        if on_complete is not None:
            on_complete(totals, resume_cursor)
        ctx.progress(total=totals.processed, metadata={"pages": pages})
        return totals


@contextmanager
def batch_transaction():
    """The transaction one pull batch and its checkpoint are written in (bench/pull_shopify writes its batches
    in it too, to measure what a pull does)."""
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            # Don't wait for the WAL flush of each batch: if the server crashes, the batch and the checkpoint
            # that covers it are lost together and the pull re-reads them from the upstream.
            with connection.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit TO OFF")
        yield


def _write_batch(ctx, pid, token, upsert, rows, totals: BatchResult, keep_errors, *, cursor, pages):
    with batch_transaction():
        result = upsert(rows) if rows else BatchResult()
        totals.add(result, keep_errors)
        checkpoint = {"cursor": cursor, "pages": pages, "counts": totals.as_counts()}
        pull_checkpoint(pid, token, checkpoint=checkpoint, items_done=totals.processed)
    ctx.progress(
        processed=totals.processed,
        successful=totals.successful,
        failed=totals.failed,
        metadata={**totals.as_counts(), "pages": pages, "errors": totals.errors},
    )
