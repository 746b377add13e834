"""What every upstream sandbox is made of: a request/response pair, injectable faults, a request
window limiter, and the SandboxApp interface that ``integrations.sandbox.server`` serves."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs


@dataclass
class SandboxRequest:
    method: str
    path: str  # below the sandbox's prefix, e.g. "/v3.0/customer/list"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"))


@dataclass
class SandboxResponse:
    status: int = 200
    body: Any = None  # dict/list → JSON, bytes/str → as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    # A refusal for rate or lock (HTTP 429, Nhanh's ERR_429, Shopify's THROTTLED): counted as rate_limited.
    rate_limited: bool = False

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Faults:
    """Injectable faults of one sandbox. ``*_next`` counters hit the next N requests (deterministic
    storms for tests); ``*_rate`` hit a random share. Changed at run time through the control API."""

    latency_ms: int = 0
    server_error_next: int = 0
    server_error_rate: float = 0.0
    server_error_status: int = 503
    timeout_next: int = 0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    rate_limit_next: int = 0
    malformed_rate: float = 0.0  # share of rows an app corrupts (missing id, bad date, wrong type)
    rate_limit_enabled: bool = True
    auth_reject: bool = False  # refuse every credential
    drop_after_commit_next: int = 0  # apply the next N writes, then drop the connection unanswered
    mutations_per_second: float = 0.0  # Pancake: live inserts/updates of page customers while pulls read

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Raise ValueError for a setting of the wrong type or out of range (subclasses add their choices by
        extending this): every number is finite and not negative, a ``*_rate`` is a share (0–1), a switch is a
        JSON boolean. A bad value must be refused here, not break the thread that reads it later."""
        for setting in fields(self):
            value, kind = getattr(self, setting.name), type(setting.default)
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{setting.name} must be true or false")
            elif kind in (int, float):
                number = int if kind is int else int | float
                if isinstance(value, bool) or not isinstance(value, number) or not math.isfinite(value) \
                        or value < 0:
                    raise ValueError(f"{setting.name} must be a {'whole ' if kind is int else ''}number ≥ 0")
                if setting.name.endswith("_rate") and value > 1:
                    raise ValueError(f"{setting.name} must be between 0 and 1")
            elif kind is str and not isinstance(value, str):
                raise ValueError(f"{setting.name} must be a string")
        if not 500 <= self.server_error_status <= 599:
            raise ValueError("server_error_status must be a 5xx status")


class WindowLimiter:
    """At most ``limit`` requests per ``window`` seconds per key (sliding window). Thread-safe."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a request; return None if allowed, else the seconds until one is allowed."""
        now = time.monotonic()
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return q[0] + self.window - now
            q.append(now)
            return None


@dataclass
class SandboxOptions:
    seed: int = 1
    customers: int = 1000
    shopify_customers: int | None = None
    overlap: float = 0.5
    products: int = 300
    rate_limit: bool = True
    latency_ms: int = 0
    nhanh_cursor: str = "object"  # paginator.next shape: object | array | mixed (see NhanhFaults)
    shopify_token_ttl: float = 86_400.0  # lifetime of client-credentials tokens (Shopify: ~24 h)
    shopify_bulk_rows_per_second: float = 2000.0  # server-side speed of bulk operations (0: unthrottled)
    shopee_shops: list[int] | None = None  # campaign counts of the Shopee sandbox's shops (None: its default)
    pancake_pages: int = 2
    pancake_customers: int = 500  # per page
    pancake_mutations_per_second: float = 0.0


class SandboxApp:
    """One upstream's sandbox. Subclasses implement ``handle`` and may override the error shapes."""

    name = "base"
    # (requests, seconds) per rate_limit_key, or None when the API limits otherwise (Shopify: cost).
    request_limit: tuple[int, float] | None = None
    faults_class: type[Faults] = Faults

    def __init__(self, options: SandboxOptions, population=None):
        self.options = options
        self.population = population
        self.faults = self.default_faults()
        self.limiter = WindowLimiter(*self.request_limit) if self.request_limit else None
        self.rng = random.Random(options.seed)
        self.requests_served = 0
        self.rate_limited = 0  # answers refused for rate or lock
        self._counter_lock = threading.Lock()

    def default_faults(self) -> Faults:
        """The faults at start and after ``reset_faults``."""
        return self.faults_class(latency_ms=self.options.latency_ms, rate_limit_enabled=self.options.rate_limit)

    def count_answer(self, response: SandboxResponse | None) -> None:
        """Called by the server for every request it served (None: an injected timeout)."""
        with self._counter_lock:
            self.requests_served += 1
            if response is not None and response.rate_limited:
                self.rate_limited += 1

    # --- subclasses -----------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def rate_limit_key(self, request: SandboxRequest) -> str | None:
        return None

    def rate_limited_response(self, request: SandboxRequest, retry_after: float) -> SandboxResponse:
        return SandboxResponse(429, {"errors": "Too many requests"}, {"Retry-After": f"{max(retry_after, 0):.0f}"},
                               rate_limited=True)

    def server_error_response(self, request: SandboxRequest, status: int) -> SandboxResponse:
        return SandboxResponse(status, {"errors": "Service unavailable (injected fault)"})

    def control(self, action: str, payload: dict) -> Any:
        """Sandbox-specific test hooks (``POST /_sandbox/<name>/<action>``)."""
        raise KeyError(action)

    def status(self) -> dict:
        return {"requests_served": self.requests_served, "rate_limited": self.rate_limited,
                "faults": self.faults.as_dict()}

    def counters(self) -> dict:
        """What ``GET /_sandbox/`` reports for every sandbox, whatever its ``status`` adds."""
        return {"requests_served": self.requests_served, "rate_limited": self.rate_limited}

    # --- helpers --------------------------------------------------------------------------------
    def roll_malformed(self) -> bool:
        return self.faults.malformed_rate > 0 and self.rng.random() < self.faults.malformed_rate
