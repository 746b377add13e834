"""Shopify bulk query pulls: run the operation, follow it, download its JSONL to disk, ingest it in pages.

``ShopifyBulkSource`` is a pull source of the framework in ``jobs.pulls`` (``pages(cursor)``). Its cursor
is ``{"bulk_id": gid, "line": N}``: the operation and the JSONL line the next page starts at.

- No cursor: start a bulk operation (waiting out "already in progress"); a cursor with a ``bulk_id``
  re-attaches to that operation instead of starting another (a pull killed while Shopify works).
- While Shopify works: an empty page per poll, ``cursor_after={"bulk_id", "line": 0}`` and
  ``progress={"path": "bulk", "stage": status, "object_count": n}``, ``total`` from ``customersCount``.
- Then the result is streamed to a temporary file (never held in memory) and read from line N: pages of
  top-level objects, each with the child lines (``__parentId``: variants of a product …) attached under
  ``"__children"``, wherever in the file they are. The last page has ``cursor_after=None``.
- FAILED with a ``partialDataUrl``: what exists is ingested, ``progress["partial"]`` says so. An expired
  result URL (or an EXPIRED / unknown operation on re-attach, or a FAILED one with nothing to read)
  re-runs the operation: a new ``bulk_id``, from line 0 (upserts make the re-read harmless).
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from integrations.errors import BadPayload, UpstreamError, UpstreamUnavailable
from jobs.pulls import Page

from .client import (
    DEFAULT_METAFIELDS,
    BulkOperationFailed,
    Metafields,
    ShopifyClient,
    customers_bulk_query,
    products_bulk_query,
)

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("CREATED", "RUNNING", "CANCELING")
CHUNK_BYTES = 1 << 20
PARENT_KEY = b'"__parentId"'
CHILDREN = "__children"
MAX_RERUNS = 3


class BulkResultExpired(UpstreamError):
    """The result URL no longer works (signed URLs expire 7 days after the operation ended)."""


def download_jsonl(url: str, directory: str | Path, *, timeout=(10.0, 300.0), attempts: int = 5,
                   sleep: Callable[[float], None] = time.sleep) -> Path:
    """Stream a bulk result to a file in ``directory`` in 1 MB chunks; returns its path. The signed URL is
    fetched without our Shopify credentials (it points at cloud storage, not the shop)."""
    path = Path(directory) / "result.jsonl"
    for attempt in range(1, attempts + 1):
        try:
            with requests.get(url, stream=True, timeout=timeout,
                              headers={"User-Agent": "ShopBridge/0.1"}) as response:
                if response.status_code in (400, 401, 403, 404, 410):
                    raise BulkResultExpired(f"result URL refused (HTTP {response.status_code}): "
                                            f"{response.text[:160]!r}", system="shopify",
                                            status=response.status_code)
                if response.status_code >= 400:
                    raise UpstreamUnavailable(f"result download answered HTTP {response.status_code}",
                                              system="shopify", status=response.status_code)
                with open(path, "wb") as out:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
            return path
        except (requests.RequestException, UpstreamUnavailable) as exc:
            if attempt == attempts:
                if isinstance(exc, UpstreamUnavailable):
                    raise
                raise UpstreamUnavailable(f"result download failed ({type(exc).__name__})",
                                          system="shopify") from exc
            log.warning("shopify: bulk result download failed (%s); retrying", type(exc).__name__)
            sleep(min(2.0 ** attempt, 30.0))
    raise AssertionError("unreachable")


def _open(path: Path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"  # whether Shopify gzips the file is unconfirmed: accept both
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 - returned to a with


class JsonlResult:
    """A downloaded bulk result: top-level objects from line N on, children attached.

    Child lines (with ``__parentId``) come after their parent but not necessarily next to it, so they are
    first indexed by parent in a SQLite file beside the result (only if the file has any); memory stays
    flat whatever the file's size."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines = 0
        self.child_lines = 0
        self.truncated_last_line = False  # partial data can end in a cut line
        self._index: sqlite3.Connection | None = None
        self._build_index()

    def _build_index(self) -> None:
        batch: list[tuple[str, int, str]] = []
        with _open(self.path) as f:
            for number, raw in enumerate(f):
                self.lines = number + 1
                if PARENT_KEY not in raw:
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue  # reported (or tolerated as the last line) when objects() reads it
                parent = obj.get("__parentId") if isinstance(obj, dict) else None
                if parent is None:
                    continue
                batch.append((str(parent), number, raw.decode("utf-8")))
                if len(batch) >= 5000:
                    self._store(batch)
                    batch = []
        if batch:
            self._store(batch)
        if self._index is not None:
            self._index.execute("CREATE INDEX children_parent ON children (parent, line)")

    def _store(self, rows: list[tuple[str, int, str]]) -> None:
        if self._index is None:
            self._index = sqlite3.connect(str(self.path) + ".children.sqlite3", check_same_thread=False)
            self._index.execute("CREATE TABLE children (parent TEXT, line INTEGER, body TEXT)")
        self._index.executemany("INSERT INTO children VALUES (?, ?, ?)", rows)
        self.child_lines += len(rows)

    def _children_of(self, parent_id) -> list[dict]:
        rows = self._index.execute("SELECT body FROM children WHERE parent = ? ORDER BY line", (str(parent_id),))
        children = []
        for (body,) in rows.fetchall():
            child = json.loads(body)
            below = self._children_of(child["id"]) if child.get("id") is not None else []
            if below:
                child[CHILDREN] = below
            children.append(child)
        return children

    def objects(self, start_line: int = 0) -> Iterator[tuple[int, dict]]:
        """``(line after it, object)`` for each top-level object from line ``start_line`` (0-based) on."""
        bad_line = None
        with _open(self.path) as f:
            for number, raw in enumerate(f):
                if number < start_line or not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    bad_line = number
                    continue
                if bad_line is not None:
                    raise BadPayload(f"bulk result line {bad_line + 1} is not JSON", system="shopify")
                if not isinstance(obj, dict):
                    raise BadPayload(f"bulk result line {number + 1} is not an object", system="shopify")
                if "__parentId" in obj:
                    continue  # attached to its parent
                if self._index is not None and obj.get("id") is not None:
                    children = self._children_of(obj["id"])
                    if children:
                        obj[CHILDREN] = children
                yield number + 1, obj
        if bad_line is not None:
            log.warning("shopify: the bulk result's last line (%s) is cut; ignored", bad_line + 1)
            self.truncated_last_line = True

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None


class ShopifyBulkSource:
    """A pull source that reads through a Shopify bulk query operation (see the module docstring)."""

    def __init__(self, client: ShopifyClient, bulk_query: str, *, count: Callable[[], tuple[int, str]] | None = None,
                 page_size: int = 1000, poll_seconds: float = 3.0, in_progress_wait: float = 30.0,
                 workdir: str | None = None, sleep: Callable[[float], None] | None = None):
        self.client = client
        self.bulk_query = bulk_query
        self.count = count
        self.page_size = page_size
        self.poll_seconds = poll_seconds
        self.in_progress_wait = in_progress_wait
        self.workdir = workdir
        self.sleep = sleep or client.sleep
        self.started: list[str] = []  # bulk operations this source started (re-runs included)
        self.partial = False

    @classmethod
    def customers(cls, client: ShopifyClient, query: str | None = None, *,
                  metafields: Metafields = DEFAULT_METAFIELDS, **kw) -> ShopifyBulkSource:
        """Every customer matching the search ``query`` (None: all), with these metafields."""
        query = query or None
        return cls(client, customers_bulk_query(query, metafields=metafields),
                   count=lambda: client.customers_count(query), **kw)

    @classmethod
    def products(cls, client: ShopifyClient, query: str | None = None, **kw) -> ShopifyBulkSource:
        """Every product matching ``query`` (None: all) × its variants × their ``available`` per location: each
        row a product whose ``__children`` are its variants, theirs the variant's inventory levels."""
        # No total: the pull counts products, variants and locations, more rows than productsCount says.
        return cls(client, products_bulk_query(query or None), **kw)

    # --- the pull source --------------------------------------------------------------------------
    def pages(self, cursor) -> Iterator[Page]:
        cursor = dict(cursor or {})
        bulk_id, line = cursor.get("bulk_id"), int(cursor.get("line") or 0)
        total = self.count()[0] if self.count else None
        directory = tempfile.mkdtemp(prefix="shopbridge-bulk-", dir=self.workdir)
        reruns = 0
        try:
            while True:
                started_here = False
                if not bulk_id and not reruns:
                    # Killed after starting an operation but before its id was checkpointed: the app's latest
                    # operation, still running this very query, is ours.
                    current = self.client.current_bulk_operation()
                    if current and current.get("status") in ACTIVE_STATUSES and \
                            current.get("query") == self.bulk_query:
                        bulk_id, line = current["id"], 0
                        log.info("shopify: re-attached to running bulk operation %s", bulk_id)
                if not bulk_id:
                    operation = self.client.start_bulk_query(self.bulk_query, wait_seconds=self.in_progress_wait)
                    bulk_id, line, started_here = operation["id"], 0, True
                    self.started.append(bulk_id)
                    log.info("shopify: bulk operation %s started", bulk_id)
                operation = yield from self._follow(bulk_id, total)
                url, why_rerun = self._result_url(operation, bulk_id, started_here)
                if why_rerun is None and url:
                    try:
                        path = download_jsonl(url, directory, sleep=self.sleep)
                    except BulkResultExpired as exc:
                        why_rerun = f"its result URL no longer works ({exc})"
                if why_rerun is not None:
                    reruns += 1
                    if reruns > MAX_RERUNS:
                        raise BulkOperationFailed(f"bulk operation {bulk_id}: {why_rerun}; gave up after "
                                                  f"{MAX_RERUNS} re-runs", system="shopify")
                    log.warning("shopify: bulk operation %s: %s; running it again", bulk_id, why_rerun)
                    bulk_id, line = None, 0
                    continue
                progress = self._progress(operation)
                if not url:  # COMPLETED with nothing matching: url is null
                    yield Page([], None, progress=progress, total=total)
                    return
                yield from self._ingest(Path(path), bulk_id, line, progress, total)
                return
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _follow(self, bulk_id: str, total: int | None):
        """Poll the operation until it ends, yielding a progress page per poll; returns its last state."""
        while True:
            operation = self.client.bulk_operation(bulk_id)
            if operation is None or operation.get("status") not in ACTIVE_STATUSES:
                return operation
            yield Page([], {"bulk_id": bulk_id, "line": 0}, progress=self._progress(operation), total=total)
            self.sleep(self.poll_seconds)

    def _result_url(self, operation: dict | None, bulk_id: str, started_here: bool) -> tuple[str | None, str | None]:
        """(URL to read, None) or (None, why the operation must run again); raises when it cannot help."""
        if operation is None:
            return None, "the shop does not know it"
        status = operation.get("status")
        self.partial = False
        if status == "COMPLETED":
            return operation.get("url"), None
        if status == "FAILED" and operation.get("partialDataUrl"):
            self.partial = True
            log.warning("shopify: bulk operation %s FAILED (%s); ingesting its partial data", bulk_id,
                        operation.get("errorCode"))
            return operation["partialDataUrl"], None
        if status == "EXPIRED":
            return None, "its result expired"
        if status == "FAILED" and not started_here:
            return None, f"it had FAILED ({operation.get('errorCode')}) with no data"
        code = operation.get("errorCode") or status
        raise BulkOperationFailed(f"bulk operation {bulk_id} ended {status} ({code}) with no data",
                                  system="shopify", code=str(code))

    def _progress(self, operation: dict) -> dict:
        progress = {"path": "bulk", "stage": operation.get("status"), "bulk_id": operation.get("id"),
                    "object_count": int(operation.get("objectCount") or 0)}
        if self.partial:
            progress.update(partial=True, error_code=operation.get("errorCode"))
        return progress

    def _ingest(self, path: Path, bulk_id: str, line: int, progress: dict, total: int | None) -> Iterator[Page]:
        result = JsonlResult(path)
        try:
            objects = result.objects(start_line=line)
            upcoming = next(objects, None)
            while True:
                rows, after = [], line
                while upcoming is not None and len(rows) < self.page_size:
                    after, obj = upcoming
                    rows.append(obj)
                    upcoming = next(objects, None)
                last = upcoming is None
                line = after
                yield Page(rows, None if last else {"bulk_id": bulk_id, "line": after},
                           progress={**progress, "line": after,
                                     **({"truncated_last_line": True} if result.truncated_last_line else {})},
                           total=total)
                if last:
                    return
        finally:
            result.close()
