"""Each upstream's health from the last real calls, for the overview: OK, or failing since when and with what.

The clients report every call's outcome here (``BaseClient.call``, when the client was given a ``status_key``:
``client_for`` and the Shopee shop clients set one). Writing a row per call would turn a pull of 10,000 calls into
10,000 writes, so a process writes only when the state it last wrote for a key changes (OK → failing or back) or,
while it stays the same, at most once a minute (``WRITE_EVERY_SECONDS``): the "last OK" time is then at most a minute
old. Each write is one conditional UPDATE (an INSERT the first time); ``failing_since`` keeps the first failure
(``COALESCE``), so concurrent workers need no read-then-write. A failure to record is logged and never reaches
the caller: the health display must not break a pull.

A job that calls an upstream from helper threads (the sync senders) keeps its database work on its own thread: the
helpers run their calls through ``HeldOutcomes.run``, which holds the outcomes in memory, and the job's thread writes
them with ``HeldOutcomes.write``. A helper's own connection would otherwise write beside the job's (and on SQLite
wait, up to the busy timeout, for the job's transaction to end).

What counts as failing: the upstream could not be reached or refused our credentials or answered garbage (after
the client's retries). A refusal of one request (``RequestRejected``: validation, a missing object) means the
upstream answered, so the connection counts as OK.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

log = logging.getLogger(__name__)

WRITE_EVERY_SECONDS = 60.0
MAX_ERROR_CHARS = 500

_lock = threading.Lock()
_last_written: dict[str, tuple[bool, float]] = {}  # key → (ok, monotonic time) this process last wrote
_this_thread = threading.local()  # .held: the HeldOutcomes this thread's outcomes go to, if any


def _due(key: str, ok: bool) -> bool:
    now = time.monotonic()
    with _lock:
        last = _last_written.get(key)
        if last is not None and last[0] == ok and now - last[1] < WRITE_EVERY_SECONDS:
            return False
        _last_written[key] = (ok, now)
        return True


def forget_written() -> None:
    """Forget what this process wrote (tests: the next outcome of every key is written)."""
    with _lock:
        _last_written.clear()


def counts_as_failure(exc: BaseException) -> bool:
    from .errors import RequestRejected, UpstreamError

    return isinstance(exc, UpstreamError) and not isinstance(exc, RequestRejected)


class HeldOutcomes:
    """Outcomes of calls made on helper threads, kept (the latest per key) until the owning thread writes them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[bool, str]] = {}

    def run(self, fn, /, *args, **kwargs):
        """Call ``fn`` on this thread with its outcomes held here: ``pool.submit(held.run, fn, …)``."""
        previous = getattr(_this_thread, "held", None)
        _this_thread.held = self
        try:
            return fn(*args, **kwargs)
        finally:
            _this_thread.held = previous

    def hold(self, key: str, ok: bool, error: str) -> None:
        with self._lock:
            self._latest[key] = (ok, error)

    def write(self) -> None:
        """Record what the helpers saw (on the owning thread)."""
        with self._lock:
            latest, self._latest = self._latest, {}
        for key, (ok, error) in latest.items():
            record_call(key, ok, error)


def record_call(key: str | None, ok: bool, error: str = "") -> bool:
    """Record one call's outcome for ``key``; returns whether a row was written."""
    if not key:
        return False
    held = getattr(_this_thread, "held", None)
    if held is not None:
        held.hold(key, ok, error)
        return False
    if not _due(key, ok):
        return False
    from .models import UpstreamStatus

    now = timezone.now()
    if ok:
        values = {"ok": True, "last_ok_at": now, "failing_since": None, "last_error": "", "updated_at": now}
    else:
        values = {"ok": False, "last_failure_at": now, "failing_since": Coalesce(F("failing_since"), now),
                  "last_error": (error or "")[:MAX_ERROR_CHARS], "updated_at": now}
    try:
        with transaction.atomic():  # a savepoint inside a job's transaction: a failure here leaves it usable
            if UpstreamStatus.objects.filter(key=key).update(**values):
                return True
            try:
                with transaction.atomic():
                    create = {k: (now if k == "failing_since" else v) for k, v in values.items()}
                    UpstreamStatus.objects.create(key=key, **create)
            except IntegrityError:  # another process inserted it first
                UpstreamStatus.objects.filter(key=key).update(**values)
        return True
    except (DatabaseError, RuntimeError) as exc:  # RuntimeError: no database access here (e.g. a unit test)
        with _lock:
            _last_written.pop(key, None)
        log.warning("could not record the status of %s: %s", key, exc)
        return False
