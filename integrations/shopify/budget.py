"""One Shopify cost budget per shop, shared by every process that calls it (pulls and syncs at once).

Shopify limits an (app, shop) pair with one leaky bucket of cost points (shared/upstreams/shopify.md §2),
however many workers send. Each client used to pace by its own estimate, so two processes each thought
they had the whole bucket. Here the estimate lives outside the process: in Redis when Celery's broker is
Redis (workers on several machines), else in a small JSON file under a file lock in ``var/`` (the embedded
single-machine install).

The estimate is ``{avail, at, max, restore, seq, flights}``: points available at time ``at`` (unix seconds),
refilling at ``restore``/s up to ``max``; ``flights`` the calls sent and not answered yet (id → [points, seq
before it, sent at]) and ``seq`` the points ever taken. Before the first answer only ``seq`` and ``flights``
are known: every call goes, counted.

A sender takes its expected cost before sending (or learns how long to wait); the answer settles it: unused
points are given back and the estimate follows Shopify's report of the bucket, less what may not be in that
report yet: the calls still in flight that were sent before this one, and every call taken after it (answered or
not, they may have reached Shopify after it). That is a floor the bucket holds at least, so the estimate is
raised to it (a report seen late would otherwise leave the estimate below the bucket for good, and a sync living
on the restore rate left that many points unspent), and lowered to the report when it holds less. A call that
never settles (its process died) stops counting after ``FLIGHT_SECONDS``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

State = dict[str, Any] | None
STATE_TTL_SECONDS = 3600  # an idle shop's estimate is dropped (a full bucket is then assumed)
FLIGHT_SECONDS = 120.0  # longer than any request with its timeouts: a call older than that is not coming back


def _flights(state: State, now: float) -> dict[str, list[float]]:
    return {k: v for k, v in ((state or {}).get("flights") or {}).items() if now - v[2] <= FLIGHT_SECONDS}


def _known(state: State) -> bool:
    return state is not None and "max" in state


def reserve_points(state: State, cost: float, now: float, flight: str) -> tuple[State, tuple[float, float]]:
    """Take ``cost`` from the estimate for the call ``flight``: (new state, (0, points taken)) if it holds it,
    else (state, (seconds to wait, 0)). Points taken are what the answer's settlement may give back."""
    flights = _flights(state, now)
    seq = float((state or {}).get("seq", 0.0))
    if not _known(state):  # nothing known yet: go, counted; the first answer tells
        return {"seq": seq + cost, "flights": {**flights, flight: [cost, seq, now]}, "at": now}, (0.0, cost)
    maximum, restore = state["max"], state["restore"]
    avail = min(maximum, state["avail"] + max(now - state["at"], 0.0) * restore)
    cost = min(cost, maximum)  # a query dearer than the bucket goes when the bucket is full
    if avail >= cost or restore <= 0:
        return {**state, "avail": avail - cost, "at": now, "seq": seq + cost,
                "flights": {**flights, flight: [cost, seq, now]}}, (0.0, cost)
    return {**state, "avail": avail, "at": now, "flights": flights}, ((cost - avail) / restore, 0.0)


def settle_points(state: State, flight: str | None, actual: float | None, status: dict | None, now: float) -> State:
    """Account for the answer to ``flight``: give back what was taken and not spent, follow Shopify's report."""
    flights = _flights(state, now)
    mine = flights.pop(flight, None)
    seq = float((state or {}).get("seq", 0.0))
    if status is None or status.get("maximumAvailable") is None:
        # No report (timeout, 5xx): Shopify may have spent the points, so nothing is given back.
        return {**(state or {}), "flights": flights, "seq": seq, "at": (state or {}).get("at", now)}
    maximum, restore = float(status["maximumAvailable"]), float(status.get("restoreRate") or 0.0)
    reported = status.get("currentlyAvailable")
    reserved = mine[0] if mine else 0.0
    if mine:  # what may have reached Shopify after this call: in flight before it, and taken since
        unseen = sum(p for p, before, _ in flights.values() if before < mine[1]) + (seq - mine[1] - mine[0])
    else:  # unknown to the estimate (expired): everything in flight
        unseen = sum(p for p, _, _ in flights.values())
    floor = float(reported) - unseen if reported is not None else None
    if not _known(state) or state["max"] != maximum or state["restore"] != restore:
        avail = floor if floor is not None else maximum - unseen
    else:
        avail = min(maximum, state["avail"] + max(now - state["at"], 0.0) * restore)
        spent = actual if actual is not None else 0.0  # THROTTLED (actual null): nothing was spent
        avail += max(reserved - spent, 0.0)
        if reported is not None:
            avail = max(min(avail, float(reported)), floor)
    return {"avail": min(avail, maximum), "at": now, "max": maximum, "restore": restore, "seq": seq,
            "flights": flights}


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

    def reserve(self, cost: float) -> tuple[float, str | None]:
        """``(0, flight id)`` if the estimate held ``cost`` (settle that flight with the answer); else
        ``(seconds to wait before asking again, None)``."""
        flight = uuid.uuid4().hex[:16]
        wait, _taken = self.backend.update(self.key, lambda state: reserve_points(state, cost, time.time(), flight))
        return (0.0, flight) if wait <= 0 else (wait, None)

    def settle(self, flight: str | None, actual: float | None, status: dict | None) -> None:
        self.backend.update(self.key, lambda state: (settle_points(state, flight, actual, status, time.time()), None))

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
