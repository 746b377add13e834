"""One request budget per upstream key, shared by every process that calls the upstream.

Nhanh counts 150 requests per 30 s per (appId, businessId, URL), and a pull, a sync and up to three other
pulls may call the same URL at once from workers on several machines. Each process pacing itself with an
in-memory limiter lets them overrun the budget together and get locked out, so the budget lives in a store
every process sees, through pyrate-limiter's buckets (sliding-window log):

| store                 | chosen when                                            | pyrate-limiter bucket |
|-----------------------|--------------------------------------------------------|-----------------------|
| Redis                 | ``CELERY_BROKER_URL`` is ``redis://``                  | RedisBucket           |
| PostgreSQL            | the database is PostgreSQL (and no Redis)              | PostgresBucket        |
| SQLite file in var/   | the embedded default                                   | SQLiteBucket          |
| this process only     | ``memory://`` (tests, one-off scripts)                 | InMemoryBucket        |

``SHOPBRIDGE_RATE_LIMIT_URL`` overrides the choice (``redis://…``, ``postgres://…``, ``sqlite:///path``,
``memory://``). The store also keeps the lock an upstream reports ("locked until", e.g. Nhanh's ERR_429
``unlockedAt``): every client waits it out before sending, because a call made while locked extends the lock.

Use::

    limiter = shared_limiter()                        # one per process and store
    limiter.acquire(key, limit=150, seconds=30)        # blocks until a slot is free and no lock holds
    limiter.lock(key, until=unix_seconds)              # an upstream said "locked until"
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyrate_limiter import AbstractBucket, Duration, InMemoryBucket, Rate, RateItem, SQLiteBucket

log = logging.getLogger(__name__)

KEY_PREFIX = "shopbridge:ratelimit:"
# Slack added to every window: the upstream stamps a request when it arrives, later than we stamp it here,
# and uneven network or scheduling delay (a busy worker machine stalls a process for hundreds of ms) must not
# squeeze one more request into its window. The budget is kept as ``limit`` per ``seconds + margin`` (not as
# a longer sleep: a process coming back from other work would skip it). Costs 1 s a window: 3 % of 30 s.
DEFAULT_MARGIN_SECONDS = 1.0
# Added to a lock's end: the upstream's clock and ours differ a little.
LOCK_MARGIN_SECONDS = 0.5
LEAK_EVERY_SECONDS = 10.0


def _digest(key: str) -> str:
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:20]


# --- stores ---------------------------------------------------------------------------------------------
class RateStore:
    """Where buckets and locks live. ``bucket(key, rate)`` is called once per key and rate per process."""

    name = "base"

    def bucket(self, key: str, rate: Rate) -> AbstractBucket:
        raise NotImplementedError

    def lock(self, key: str, until: float) -> None:
        """Record that ``key`` is locked until ``until`` (unix s); an earlier end never shortens a lock."""
        raise NotImplementedError

    def locked_until(self, key: str) -> float | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MemoryStore(RateStore):
    """This process only: what every process had before the budget was shared."""

    name = "memory"

    def __init__(self):
        self._locks: dict[str, float] = {}
        self._guard = threading.Lock()

    def bucket(self, key: str, rate: Rate) -> AbstractBucket:
        return InMemoryBucket([rate])

    def lock(self, key: str, until: float) -> None:
        with self._guard:
            self._locks[key] = max(self._locks.get(key, 0.0), until)

    def locked_until(self, key: str) -> float | None:
        return self._locks.get(key)


# Keeps the later of the stored and the new lock end, expiring with it.
_REDIS_LOCK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
return 1
"""


def _redis_bucket_class():
    """pyrate-limiter's RedisBucket, counting every entry from the window's start on. Its script counts
    ``ZCOUNT window_start now`` with ``now`` read from the caller's clock before the call: an entry another
    process stamped a few ms later but inserted first is then not counted, and two processes take the last
    slot together (seen under load as one lock-out per burst). Counting up to +inf closes that gap."""
    from pyrate_limiter import RedisBucket
    from pyrate_limiter.buckets.redis_bucket import LuaScript

    original = "redis.call('ZCOUNT', bucket, window_start, now)"
    if original not in LuaScript.PUT_ITEM:
        raise RuntimeError("pyrate-limiter's Redis script changed: review integrations.ratelimit")
    script = LuaScript.PUT_ITEM.replace(original, "redis.call('ZCOUNT', bucket, window_start, '+inf')")

    class WholeWindowRedisBucket(RedisBucket):
        @classmethod
        def init(cls, rates, redis, bucket_key, algorithm=None):
            return cls(rates, redis, bucket_key, redis.script_load(script), algorithm)

    return WholeWindowRedisBucket


class RedisStore(RateStore):
    name = "redis"

    def __init__(self, url: str):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._lock_script = self.redis.register_script(_REDIS_LOCK_SCRIPT)
        self._bucket_class = _redis_bucket_class()

    def bucket(self, key: str, rate: Rate) -> AbstractBucket:
        return self._bucket_class.init([rate], self.redis, f"{KEY_PREFIX}bucket:{key}")

    def lock(self, key: str, until: float) -> None:
        self._lock_script(keys=[f"{KEY_PREFIX}lock:{key}"], args=[repr(until), int(until * 1000) + 1000])

    def locked_until(self, key: str) -> float | None:
        value = self.redis.get(f"{KEY_PREFIX}lock:{key}")
        return float(value) if value is not None else None

    def close(self) -> None:
        self.redis.close()


class PostgresStore(RateStore):
    """Tables ``ratelimit___sb_<hash of key>`` (pyrate-limiter's) and ``ratelimit___shopbridge_locks``, created
    on first use. Connections are opened per operation (a null pool): nothing stays connected between
    requests, so a database can be dropped or migrated under an idle worker."""

    name = "postgres"
    LOCK_TABLE = "ratelimit___shopbridge_locks"

    def __init__(self, conninfo: str):
        from psycopg_pool import NullConnectionPool

        self.pool = NullConnectionPool(conninfo, max_size=8, open=True, timeout=30)
        with self.pool.connection() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.LOCK_TABLE} "
                         "(key TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL)")

    def bucket(self, key: str, rate: Rate) -> AbstractBucket:
        from pyrate_limiter import PostgresBucket

        return PostgresBucket(self.pool, f"sb_{_digest(key)}", [rate])

    def lock(self, key: str, until: float) -> None:
        with self.pool.connection() as conn:
            conn.execute(f"INSERT INTO {self.LOCK_TABLE} (key, until) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                         f"SET until = GREATEST({self.LOCK_TABLE}.until, EXCLUDED.until)", (key, until))

    def locked_until(self, key: str) -> float | None:
        with self.pool.connection() as conn:
            row = conn.execute(f"SELECT until FROM {self.LOCK_TABLE} WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.pool.close()


class _ImmediateSQLiteBucket(SQLiteBucket):
    """SQLiteBucket whose count-then-insert is one ``BEGIN IMMEDIATE`` transaction, so processes sharing the
    file cannot both take the last slot (pyrate's own put is atomic within one process only)."""

    def put(self, item: RateItem) -> bool:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                admitted = super().put(item)  # commits when it inserts
            finally:
                if self.conn.in_transaction:
                    self.conn.rollback()
            return admitted


class SQLiteStore(RateStore):
    """One SQLite file (WAL) shared by the processes of one machine: the embedded default."""

    name = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun explicitly (BEGIN IMMEDIATE), and waits for the write lock
        # are bounded by the busy timeout.
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        # One lock for every bucket: they share this connection, and a transaction is per connection.
        self.guard = threading.RLock()
        self._schema("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                     "CREATE TABLE IF NOT EXISTS shopbridge_locks (key TEXT PRIMARY KEY, until REAL NOT NULL)")

    def _schema(self, *statements: str) -> None:
        """Run setup statements, retrying while another process sets the file up: switching to WAL takes an
        exclusive lock and SQLite answers "database is locked" at once instead of waiting for it."""
        deadline = time.monotonic() + 30
        for statement in statements:
            while True:
                try:
                    with self.guard:
                        self.conn.execute(statement)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.01, 0.1))  # noqa: S311

    def bucket(self, key: str, rate: Rate) -> AbstractBucket:
        table = f"sb_{_digest(key)}"
        self._schema(f"CREATE TABLE IF NOT EXISTS '{table}' (name VARCHAR, item_timestamp INTEGER)",
                     f"CREATE INDEX IF NOT EXISTS 'idx_{table}' ON '{table}' (item_timestamp)")
        return _ImmediateSQLiteBucket([rate], self.conn, table, lock=self.guard)

    def lock(self, key: str, until: float) -> None:
        with self.guard:
            self.conn.execute("INSERT INTO shopbridge_locks (key, until) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                              "SET until = max(until, excluded.until)", (key, until))

    def locked_until(self, key: str) -> float | None:
        with self.guard:
            row = self.conn.execute("SELECT until FROM shopbridge_locks WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self.guard:
            self.conn.close()


# --- the limiter ---------------------------------------------------------------------------------------
@dataclass
class _Slot:
    bucket: AbstractBucket
    guard: threading.Lock = field(default_factory=threading.Lock)
    last_leak: float = 0.0


class SharedLimiter:
    """Paces calls per key within ``limit`` per ``seconds`` across every process using the same store."""

    def __init__(self, store: RateStore, *, margin_seconds: float = DEFAULT_MARGIN_SECONDS, sleep=time.sleep):
        self.store = store
        self.margin = margin_seconds
        self.sleep = sleep
        self._slots: dict[tuple[str, int, int], _Slot] = {}
        self._guard = threading.Lock()

    @property
    def backend(self) -> str:
        return self.store.name

    def _slot(self, key: str, limit: int, seconds: float) -> _Slot:
        window_ms = int((seconds + self.margin) * Duration.SECOND)
        with self._guard:
            slot = self._slots.get((key, limit, window_ms))
            if slot is None:
                slot = self._slots[(key, limit, window_ms)] = _Slot(self.store.bucket(key, Rate(limit, window_ms)))
            return slot

    def acquire(self, key: str, *, limit: int, seconds: float, weight: int = 1) -> float:
        """Block until ``key`` is not locked and ``weight`` units (1: a request; a cost for cost-based
        budgets) fit its window; returns the seconds waited."""
        if not 1 <= weight <= limit:
            raise ValueError(f"{weight} units can never fit a budget of {limit} per {seconds} s")
        slot = self._slot(key, limit, seconds)
        started = time.monotonic()
        while True:
            self.wait_for_lock(key)
            with slot.guard:
                item = RateItem(key, slot.bucket.now(), weight=weight)
                admitted = slot.bucket.put(item)
                wait_ms = 0 if admitted else slot.bucket.waiting(item)
                self._leak(slot, item.timestamp)
            if admitted:
                # A lock reported while we waited for the slot: sending now would extend it. The slot is
                # spent, which only makes the next requests wait a little longer.
                if not self._locked_for(key):
                    return time.monotonic() - started
                continue
            # No wait worked out (<= 0): another process held the bucket (PostgreSQL's table lock is taken
            # NOWAIT) or the entry it looked at has just expired: try again shortly. The jitter spreads
            # processes that wake for the same freed slot.
            self.sleep(max(wait_ms, 0) / 1000 + random.uniform(0.005, 0.03))  # noqa: S311

    def _leak(self, slot: _Slot, now_ms: int) -> None:
        """Drop entries older than the window now and then (counts only look inside the window anyway)."""
        if time.monotonic() - slot.last_leak >= LEAK_EVERY_SECONDS:
            slot.last_leak = time.monotonic()
            try:
                slot.bucket.leak(now_ms)
            except Exception:  # housekeeping must never fail a request
                log.warning("rate limiter: leak failed", exc_info=True)

    def _locked_for(self, key: str) -> float:
        until = self.store.locked_until(key)
        return max(until + LOCK_MARGIN_SECONDS - time.time(), 0.0) if until else 0.0

    def wait_for_lock(self, key: str) -> float:
        """Sleep while ``key`` is locked (re-reading the store: a lock can be extended meanwhile)."""
        waited = 0.0
        while (remaining := self._locked_for(key)) > 0:
            log.info("rate limiter: %s is locked for %.1f s more; waiting", key, remaining)
            self.sleep(remaining)
            waited += remaining
        return waited

    def lock(self, key: str, until: float) -> None:
        self.store.lock(key, until)

    def locked_until(self, key: str) -> float | None:
        until = self.store.locked_until(key)
        return until if until and until > time.time() else None

    def close(self) -> None:
        self.store.close()


# --- choosing the store ----------------------------------------------------------------------------------
def store_url() -> str:
    """The store's URL from the settings: explicit, else Redis (the broker), PostgreSQL, SQLite in var/."""
    from django.conf import settings
    from django.db import connections

    if not settings.configured:  # a script without Django: nothing to share with
        return "memory://"
    explicit = settings.SHOPBRIDGE.get("RATE_LIMIT_URL") or ""
    if explicit:
        return explicit
    broker = getattr(settings, "CELERY_BROKER_URL", "") or ""
    if broker.startswith(("redis://", "rediss://")):
        return broker
    if connections["default"].vendor == "postgresql":
        return "postgres:default"  # the Django database
    return f"sqlite:///{Path(settings.VAR_DIR) / 'ratelimit.sqlite3'}"


def backend_of(url: str) -> str:
    scheme = urlsplit(url).scheme or url.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    if scheme == "sqlite":
        return "sqlite"
    if scheme == "memory":
        return "memory"
    raise ValueError(f"unknown rate-limit store {scheme!r}: use redis://, postgres://, sqlite:/// or memory://")


def _django_conninfo() -> str:
    """conninfo of Django's default database as it is now (a test run's test database included)."""
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    s = connections["default"].settings_dict
    parts: dict[str, Any] = {"dbname": s["NAME"], "user": s.get("USER") or None,
                             "password": s.get("PASSWORD") or None, "host": s.get("HOST") or None,
                             "port": str(s["PORT"]) if s.get("PORT") else None}
    return make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def open_store(url: str) -> RateStore:
    backend = backend_of(url)
    if backend == "redis":
        return RedisStore(url)
    if backend == "postgres":
        return PostgresStore(_django_conninfo() if url == "postgres:default" else url)
    if backend == "sqlite":
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError("a SQLite rate-limit store needs a path: sqlite:///path/to/file")
        return SQLiteStore(path)
    return MemoryStore()


_limiters: dict[tuple[str, int], SharedLimiter] = {}
_limiters_guard = threading.Lock()


def shared_limiter(url: str | None = None) -> SharedLimiter:
    """This process's limiter on the store at ``url`` (default: ``store_url()``). Per process: a forked
    worker must not reuse its parent's connections."""
    url = url or store_url()
    key = (url, os.getpid())
    with _limiters_guard:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = SharedLimiter(open_store(url))
            log.info("rate limiter: %s store", limiter.backend)
        return limiter


def close_shared_limiters() -> None:
    with _limiters_guard:
        for limiter in _limiters.values():
            limiter.close()
        _limiters.clear()
