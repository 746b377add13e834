"""One Shopify cost budget per shop, shared by every process that calls it (pulls and syncs at once).

Shopify limits an (app, shop) pair with one leaky bucket of cost points (shared/upstreams/shopify.md §2),
however many workers send. Each client used to pace by its own estimate, so two processes each thought
they had the whole bucket. Here the estimate lives outside the process: in Redis when Celery's broker is
Redis (workers on several machines), else in a small JSON file under a file lock in ``var/`` (the embedded
single-machine install).

The estimate is ``{avail, at, max, restore}``: points available at time ``at`` (unix seconds), refilling at
``restore``/s up to ``max``. Before the first answer it is ``{pending, at}``: the points of the calls sent
while nothing was known, so the first report is read net of the others still in flight (two processes
starting together otherwise each counted only its own first call, and the next one was throttled).

A sender takes its expected cost before sending (or learns how long to wait); the answer settles it: unused
points are given back and the estimate is lowered to what Shopify reported if that is less (never raised by a
report: another process's call may be in flight, already counted here but not yet at Shopify). An estimate that
drifted low refills like the real bucket does.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

State = dict[str, float] | None
STATE_TTL_SECONDS = 3600  # an idle shop's estimate is dropped (a full bucket is then assumed)


def reserve_points(state: State, cost: float, now: float) -> tuple[State, tuple[float, float]]:
    """Take ``cost`` from the estimate: (new state, (0, points taken)) if it holds it, else
    (state, (seconds to wait, 0)). Points taken are what the answer's settlement may give back."""
    if state is None or "max" not in state:  # nothing known yet: go, counted; the first answer tells
        return {"pending": _pending(state) + cost, "at": now}, (0.0, cost)
    maximum, restore = state["max"], state["restore"]
    avail = min(maximum, state["avail"] + max(now - state["at"], 0.0) * restore)
    cost = min(cost, maximum)  # a query dearer than the bucket goes when the bucket is full
    if avail >= cost or restore <= 0:
        return {**state, "avail": avail - cost, "at": now}, (0.0, cost)
    return {**state, "avail": avail, "at": now}, ((cost - avail) / restore, 0.0)


def settle_points(state: State, reserved: float, actual: float | None, status: dict | None,
                  now: float) -> State:
    """Account for an answer: give back what was reserved and not spent, lower to Shopify's report."""
    unknown = state is None or "max" not in state
    if status is None or status.get("maximumAvailable") is None:
        # No report (timeout, 5xx): Shopify may have spent the points, so nothing is given back. Before the
        # first report the call just stops counting as in flight: a later report shows what it spent.
        return {"pending": max(_pending(state) - reserved, 0.0), "at": now} if unknown else state
    maximum, restore = float(status["maximumAvailable"]), float(status.get("restoreRate") or 0.0)
    reported = status.get("currentlyAvailable")
    if unknown:
        # Calls other processes sent meanwhile may not be in this report yet: count them as spent (their
        # own settlement gives back what they did not spend).
        others = max(_pending(state) - reserved, 0.0)
        avail = (float(reported) if reported is not None else maximum) - others
    elif state["max"] != maximum or state["restore"] != restore:
        avail = float(reported) if reported is not None else maximum
    else:
        avail = min(maximum, state["avail"] + max(now - state["at"], 0.0) * restore)
        spent = actual if actual is not None else 0.0  # THROTTLED (actual null): nothing was spent
        avail += max(reserved - spent, 0.0)
        if reported is not None:
            avail = min(avail, float(reported))
    return {"avail": min(avail, maximum), "at": now, "max": maximum, "restore": restore}


def _pending(state: State) -> float:
    return float((state or {}).get("pending", 0.0))


class RedisBackend:
    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)

    def update(self, key: str, change: Callable[[State], tuple[State, Any]]) -> Any:
        """Apply ``change`` to the stored state atomically (optimistic WATCH/MULTI, retried on a race)."""
        import redis

        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    new, result = change(json.loads(raw) if raw else None)
                    pipe.multi()
                    if new is not None:
                        pipe.set(key, json.dumps(new), ex=STATE_TTL_SECONDS)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue


class FileBackend:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def update(self, key: str, change: Callable[[State], tuple[State, Any]]) -> Any:
        path = self.directory / f"{key}.json"
        with open(self.directory / f"{key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(path.read_text() or "null")
                except (FileNotFoundError, ValueError):
                    state = None
                if state is not None and time.time() - state.get("at", 0) > STATE_TTL_SECONDS:
                    state = None
                new, result = change(state)
                if new is not None:
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(new))
                    os.replace(tmp, path)
                return result
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class SharedCostBudget:
    """The bucket estimate of one shop, kept in ``backend`` (RedisBackend or FileBackend)."""

    def __init__(self, backend, shop_url: str):
        self.backend = backend
        self.key = "shopbridge:shopify-cost:" + hashlib.sha1(shop_url.rstrip("/").encode()).hexdigest()[:16]  # noqa: S324

    def reserve(self, cost: float) -> tuple[float, float]:
        """``(0, points taken)`` if the estimate held ``cost`` (taken: what ``settle`` may give back; 0 while
        nothing is known); else ``(seconds to wait before asking again, 0)``."""
        return self.backend.update(self.key, lambda state: reserve_points(state, cost, time.time()))

    def settle(self, reserved: float, actual: float | None, status: dict | None) -> None:
        """``reserved``: the points ``reserve`` took for this call."""
        self.backend.update(self.key, lambda state: (
            settle_points(state, reserved, actual, status, time.time()), None))

    def state(self) -> State:
        return self.backend.update(self.key, lambda state: (state, state))


def backend_for(broker_url: str, var_dir) -> RedisBackend | FileBackend:
    if broker_url.startswith(("redis://", "rediss://")):
        return RedisBackend(broker_url)
    return FileBackend(Path(var_dir) / "shopify-cost-budget")


def shared_cost_budget(shop_url: str) -> SharedCostBudget:
    """The budget every process of this deployment shares for ``shop_url`` (Redis if Celery's broker is
    Redis, else a file lock under var/)."""
    from django.conf import settings

    return SharedCostBudget(backend_for(settings.CELERY_BROKER_URL, settings.VAR_DIR), shop_url)
