"""integrations.ratelimit: one request budget per upstream key shared by every process, on each store
(SQLite always; Redis and PostgreSQL when this run has them), against the Nhanh sandbox over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from integrations.errors import RateLimited
from integrations.nhanh.client import NhanhClient
from integrations.nhanh.sandbox import SANDBOX_ACCESS_TOKEN, SANDBOX_APP_ID, SANDBOX_BUSINESS_ID
from integrations.ratelimit import SharedLimiter, backend_of, open_store, shared_limiter, store_url
from integrations.sandbox.base import WindowLimiter
from integrations.sandbox.server import control
from tests.conftest import test_database_url as database_url_for_workers

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"app_id": SANDBOX_APP_ID, "business_id": SANDBOX_BUSINESS_ID, "access_token": SANDBOX_ACCESS_TOKEN}


def _redis_url() -> str | None:
    url = settings.CELERY_BROKER_URL
    return url if url.startswith("redis://") else None


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url_for(request, tmp_path):
    """A URL of each store this run can reach (a test per store)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'budget.sqlite3'}"
    if request.param == "redis":
        if not _redis_url():
            pytest.skip("this run has no Redis (CELERY_BROKER_URL is not redis://)")
        return _redis_url()
    if connection.vendor != "postgresql":
        pytest.skip("this run's database is not PostgreSQL")
    request.getfixturevalue("django_db_setup")  # the test database exists
    return database_url_for_workers()


def unique_key(name: str) -> str:
    return f"test|{name}|{time.time_ns()}"


# --- choosing the store ---------------------------------------------------------------------------------
def test_store_follows_the_settings(settings, tmp_path):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "RATE_LIMIT_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    assert store_url() == f"sqlite:///{tmp_path / 'x.sqlite3'}"
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "RATE_LIMIT_URL": ""}
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/3"
    assert store_url() == "redis://127.0.0.1:6379/3"
    settings.CELERY_BROKER_URL = "filesystem://"
    expected = "postgres:default" if connection.vendor == "postgresql" else (
        f"sqlite:///{Path(settings.VAR_DIR) / 'ratelimit.sqlite3'}")
    assert store_url() == expected
    assert [backend_of(u) for u in ("redis://h/1", "postgres://h/db", "postgresql://h/db", "sqlite:///f",
                                    "memory://", "postgres:default")] == [
        "redis", "postgres", "postgres", "sqlite", "memory", "postgres"]
    with pytest.raises(ValueError, match="unknown rate-limit store"):
        backend_of("mysql://h/db")


def test_one_limiter_per_process_and_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.sqlite3'}"
    assert shared_limiter(url) is shared_limiter(url)
    assert shared_limiter(url).backend == "sqlite"


# --- each store -----------------------------------------------------------------------------------------
def test_limiters_on_one_store_share_the_window(store_url_for):
    """Two limiters on the same store (as two processes have) in two threads: never more than 5 a second."""
    key = unique_key("window")
    stamps: list[float] = []
    guard = threading.Lock()

    def take(n: int):
        limiter = SharedLimiter(open_store(store_url_for), margin_seconds=0.05)
        try:
            for _ in range(n):
                limiter.acquire(key, limit=5, seconds=1)
                with guard:
                    stamps.append(time.monotonic())
        finally:
            limiter.close()

    threads = [threading.Thread(target=take, args=(7,)) for _ in range(2)]
    started = time.monotonic()
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert len(stamps) == 14
    stamps.sort()
    # In any 0.95 s (a little less than the window: stamps are taken after the store's), at most 5.
    assert max(sum(1 for s in stamps if t <= s < t + 0.95) for t in stamps) <= 5
    assert time.monotonic() - started >= 2.0  # 14 at 5 a second: two full windows waited


def test_an_entry_stamped_later_but_stored_first_still_counts(store_url_for):
    """Two processes read their clocks, then the later one writes first: the earlier one must still see it
    (pyrate-limiter's Redis script counted only up to its own stamp; see ratelimit._redis_bucket_class)."""
    from pyrate_limiter import Duration, Rate, RateItem

    store = open_store(store_url_for)
    try:
        bucket = store.bucket(unique_key("order"), Rate(1, Duration.SECOND * 10))
        now = int(time.time() * 1000)
        assert bucket.put(RateItem("b", now + 20))  # stamped 20 ms later, stored first
        assert not bucket.put(RateItem("a", now))  # the one slot is taken
    finally:
        store.close()


def test_the_margin_holds_for_a_caller_that_comes_back_late(store_url_for):
    """The slack is part of the window, not only of the waits: a process busy elsewhere that asks just after
    a window has passed is still held back by the margin."""
    limiter = SharedLimiter(open_store(store_url_for), margin_seconds=0.4)
    key = unique_key("late")
    try:
        first = time.monotonic()
        limiter.acquire(key, limit=2, seconds=1)
        limiter.acquire(key, limit=2, seconds=1)
        time.sleep(max(1.05 - (time.monotonic() - first), 0))  # the 1 s window has passed
        limiter.acquire(key, limit=2, seconds=1)
        assert time.monotonic() - first >= 1.4
    finally:
        limiter.close()


def test_a_lock_recorded_by_one_limiter_holds_the_other(store_url_for):
    key = unique_key("lock")
    first, second = (SharedLimiter(open_store(store_url_for), margin_seconds=0.05) for _ in range(2))
    try:
        first.lock(key, time.time() + 1.0)
        first.lock(key, time.time() + 0.2)  # an earlier end never shortens a lock
        assert second.locked_until(key) == pytest.approx(time.time() + 1.0, abs=0.2)
        started = time.monotonic()
        second.acquire(key, limit=100, seconds=1)
        assert time.monotonic() - started >= 1.0
    finally:
        first.close()
        second.close()


# --- two processes against the Nhanh sandbox ----------------------------------------------------------
PULL_SCRIPT = """
import json, os, sys
import django
django.setup()
from integrations.errors import RateLimited
from integrations.nhanh.client import NhanhClient
client = NhanhClient(sys.argv[1], app_id=sys.argv[2], business_id=sys.argv[3], access_token=os.environ["TOKEN"],
                     requests_per_window=int(sys.argv[4]), window_seconds=float(sys.argv[5]), max_attempts=1)
try:
    rows = sum(len(rows) for rows, _ in client.iter_customer_pages(size=10))
    outcome = "ok"
except RateLimited:
    rows, outcome = None, "locked out"
print(json.dumps({"rows": rows, "outcome": outcome, "backend": client.limiter.backend}))
"""


def run_pulls_in_processes(server, store: str, processes: int = 2, limit: int = 10, seconds: float = 2.0):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SHOPBRIDGE_RATE_LIMIT_URL": store,
           "TOKEN": SANDBOX_ACCESS_TOKEN, "LOG_LEVEL": "WARNING"}
    args = [server.url_for("nhanh"), SANDBOX_APP_ID, SANDBOX_BUSINESS_ID, str(limit), str(seconds)]
    procs = [subprocess.Popen([sys.executable, "-c", PULL_SCRIPT, *args], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, control(server.base_url, "nhanh", "status")


def test_two_processes_sharing_the_budget_stay_under_the_limit(sandbox_factory, store_url_for):
    server = sandbox_factory(only=["nhanh"], customers=200, seed=21)  # rate limit on
    server.apps["nhanh"].limiter = WindowLimiter(10, 2)  # Nhanh's 150 per 30 s, scaled down
    results, status = run_pulls_in_processes(server, store_url_for)
    assert [r["outcome"] for r in results] == ["ok", "ok"]
    assert [r["rows"] for r in results] == [200, 200]
    assert {r["backend"] for r in results} == {backend_of(store_url_for)}
    assert status["rate_limited"] == 0  # not one request refused: no lock-outs
    assert status["requests_served"] == 2 * 20  # 20 pages each, the last one without a next


def test_without_a_shared_budget_the_same_processes_get_locked_out(sandbox_factory):
    # The control: each process pacing itself (what every worker did before) overruns the budget together.
    server = sandbox_factory(only=["nhanh"], customers=200, seed=21)
    server.apps["nhanh"].limiter = WindowLimiter(10, 2)
    results, status = run_pulls_in_processes(server, "memory://")
    assert status["rate_limited"] > 0
    assert "locked out" in [r["outcome"] for r in results]


def test_a_reported_lock_is_waited_out_by_every_client(sandbox_factory, store_url_for):
    server = sandbox_factory(only=["nhanh"], customers=100, seed=22)
    url = server.url_for("nhanh")
    first = NhanhClient(url, **CREDENTIALS, limiter=SharedLimiter(open_store(store_url_for)), max_attempts=1)
    other = NhanhClient(url, **CREDENTIALS, limiter=SharedLimiter(open_store(store_url_for)), max_attempts=1)
    try:
        server.apps["nhanh"].faults.rate_limit_next = 1  # the next call is refused and locks the URL for 1 s
        with pytest.raises(RateLimited):
            first.list_customers()
        assert first.lockouts == 1
        started = time.monotonic()
        rows, _ = other.list_customers()  # waits for the unlock instead of extending the lock
        assert len(rows) == 100 and other.lockouts == 0
        assert time.monotonic() - started >= 0.9
        status = control(server.base_url, "nhanh", "status")
        assert (status["requests_served"], status["rate_limited"]) == (2, 1)
    finally:
        first.close()
        other.close()
        first.limiter.close()
        other.limiter.close()
