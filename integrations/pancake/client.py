"""Client for Pancake's page API (pages.fm): page customers, page token generation and the page list.

- ``GET {base}/api/public_api/v1/pages/{page_id}/page_customers`` with ``page_access_token``, ``since``/``until``
  (Unix seconds), ``page_number`` (≥ 1), ``page_size`` (≤ 100), ``order_by=updated_at`` (newest first).
- ``POST {base}/api/v1/pages/{page_id}/generate_page_access_token?access_token=<user token>``: a new page token;
  generating one invalidates the previous one, which then answers ``error_code`` 105 (102 for an unknown one).
- Errors come as HTTP 200 with ``success: false``; a non-JSON body or a 5xx is retried, a 429 is retried after its
  Retry-After, each at most ``RETRIES`` times with exponential backoff (``integrations.http.BaseClient``).
- An adaptive rate limiter paces requests: it halves its rate on every 429 and raises it again step by step
  after a run of successes, up to the connection's configured rate (Pancake publishes no limit).
- A page token is never stored here: ``PageAuth`` (the caller's) hands out the current one and renews a rejected
  one, so a token renewed by another run of the same page is picked up instead of renewed again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import requests

from ..errors import AuthRejected, RateLimited, RequestRejected, UpstreamUnavailable
from ..http import BaseClient
from ..secrets import mask_secret

RETRIES = 5
MAX_PAGE_SIZE = 100
TOKEN_REJECTED_CODES = {102, 105}  # invalid / renewed page token: generate a new one from the user token
DEFAULT_REQUESTS_PER_SECOND = 5.0  # what public clients assume per page; no published number

_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
                   r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_time(value: Any) -> datetime:
    """A Pancake time as an aware UTC datetime. Every shape seen: ``2019-08-24T14:15:22``, with 1–9 fraction
    digits (beyond microseconds dropped), with ``Z`` or an offset (``+07:00``, ``+0700``, ``+07``); a naive time is
    UTC (what clients assume). Anything else raises ValueError."""
    match = _TIME.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"not a Pancake time: {str(value)[:40]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = UTC
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError:
        raise ValueError(f"not a Pancake time: {value[:40]!r}") from None
    return parsed.astimezone(UTC)


class TokenRejected(AuthRejected):
    """The page token is invalid (102) or was renewed (105)."""


class PageAuth(Protocol):
    page_id: str

    def token(self) -> str: ...

    def renew(self, rejected: str) -> str:
        """A token to use instead of ``rejected``: the stored one if another run already renewed it, else a new
        one generated (and stored) now."""
        ...


class AdaptiveRateLimiter:
    """Paces calls at ``rate`` per second: on a 429 the rate halves (not below ``min_rate``); after
    ``increase_after`` successes in a row it grows by ``step`` of ``max_rate`` (not above it). Thread-safe.

    Written here rather than with pyrate-limiter, whose rates are fixed when the limiter is built."""

    def __init__(self, max_rate: float, *, min_rate: float = 0.2, increase_after: int = 10, step: float = 0.1,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.max_rate = max(max_rate, min_rate)
        self.min_rate = min_rate
        self.rate = self.max_rate
        self.increase_after, self.step = increase_after, step
        self.sleep, self.clock = sleep, clock
        self._next = 0.0
        self._streak = 0
        self._lock = threading.Lock()
        self.slowdowns = 0

    def wait(self) -> None:
        with self._lock:
            now = self.clock()
            at = max(self._next, now)
            self._next = at + 1.0 / self.rate
        if at > now:
            self.sleep(at - now)

    def throttled(self) -> None:
        with self._lock:
            self.rate = max(self.rate / 2, self.min_rate)
            self._streak = 0
            self.slowdowns += 1
            self._next = max(self._next, self.clock()) + 1.0 / self.rate

    def succeeded(self) -> None:
        with self._lock:
            self._streak += 1
            if self._streak >= self.increase_after and self.rate < self.max_rate:
                self.rate = min(self.rate + self.step * self.max_rate, self.max_rate)
                self._streak = 0


_PAGE_IN_PATH = re.compile(r"/pages/([^/?]+)")


class PancakeClient(BaseClient):
    system = "pancake"

    def __init__(self, base_url: str, *, requests_per_second: float | None = None, **base_kwargs):
        base_kwargs["max_attempts"] = 1 + RETRIES  # the seed's 5 retries, whatever the shared setting says
        super().__init__(base_url, **base_kwargs)
        self.limiter = AdaptiveRateLimiter(requests_per_second or DEFAULT_REQUESTS_PER_SECOND, sleep=self.sleep)
        self.tokens_renewed = 0

    @classmethod
    def from_connection(cls, conn, **kw) -> PancakeClient:
        rate = None
        if conn is not None and conn.requests_per_window:
            rate = conn.requests_per_window / max(conn.window_seconds or 1, 1)
        return cls(conn.base_url, **{"requests_per_second": rate, **kw})

    def status_key_for(self, path: str) -> str | None:
        # A page's calls report under "pancake:<page id>" (each page has its own token and can fail alone).
        if self.status_key is None:
            return None
        match = _PAGE_IN_PATH.search(path)
        return f"{self.status_key}:{match.group(1)}" if match else self.status_key

    def __repr__(self):
        return f"<PancakeClient {self.base_url} rate={self.limiter.rate:.2f}/s>"

    # --- transport ----------------------------------------------------------------------------------------
    def _send_once(self, method: str, path: str, **kwargs) -> Any:
        self.limiter.wait()  # paced per attempt: retries count against the limit too
        try:
            result = super()._send_once(method, path, **kwargs)
        except RateLimited:
            self.limiter.throttled()
            raise
        self.limiter.succeeded()
        return result

    def check_response(self, response: requests.Response) -> dict:
        self.raise_for_status(response)
        try:
            payload = response.json()
        except ValueError:
            # An HTML error page from a proxy, a cut-off body: transient as far as we can tell.
            raise UpstreamUnavailable(f"response is not JSON (HTTP {response.status_code}): "
                                      f"{response.text[:120]!r}", system=self.system,
                                      status=response.status_code) from None
        if not isinstance(payload, dict):
            raise UpstreamUnavailable("response is not a JSON object", system=self.system)
        if payload.get("success") is False:
            code = payload.get("error_code")
            message = str(payload.get("message") or "refused")[:200]
            if code in TOKEN_REJECTED_CODES:
                raise TokenRejected(message, system=self.system, code=str(code))
            if code == 103:
                raise AuthRejected(f"the user access token expired: {message}", system=self.system, code="103")
            raise RequestRejected(message, system=self.system, code=str(code or ""))
        return payload

    # --- API ------------------------------------------------------------------------------------------------
    def generate_page_token(self, page_id: str, user_token: str) -> str:
        if not user_token:
            raise AuthRejected(f"page {page_id}: no user access token to generate a page token from",
                               system=self.system)
        try:
            payload = self.call("POST", f"/api/v1/pages/{page_id}/generate_page_access_token",
                                params={"access_token": user_token})
        except TokenRejected as exc:  # here 102 is about the user token
            raise AuthRejected(f"page {page_id}: the user access token {mask_secret(user_token)} was refused "
                               f"({exc.args[0]})", system=self.system, code=exc.code) from None
        token = payload.get("page_access_token")
        if not isinstance(token, str) or not token:
            raise RequestRejected("generate_page_access_token answered without a token", system=self.system)
        self.tokens_renewed += 1
        return token

    def list_pages(self, user_token: str) -> list[dict]:
        payload = self.call("GET", "/api/v1/pages", params={"access_token": user_token})
        categorized = payload.get("categorized")
        if isinstance(categorized, dict):
            return list(categorized.get("activated") or [])
        return list(payload.get("pages") or [])

    def page_customers(self, auth: PageAuth, *, page_number: int, since: int, until: int,
                       page_size: int = MAX_PAGE_SIZE, order_by: str = "updated_at") -> dict:
        """One page of customers: ``{"total": int | None, "customers": [...]}``. A rejected page token is renewed
        through ``auth`` and the request sent again (once per call)."""
        params = {"page_number": max(int(page_number), 1), "page_size": min(int(page_size), MAX_PAGE_SIZE),
                  "since": int(since), "until": int(until), "order_by": order_by}
        token = auth.token()
        for attempt in range(2):
            try:
                payload = self.call("GET", f"/api/public_api/v1/pages/{auth.page_id}/page_customers",
                                    params={**params, "page_access_token": token})
                break
            except TokenRejected:
                if attempt:
                    raise
                token = auth.renew(token)
        customers = payload.get("customers")
        if not isinstance(customers, list):
            raise UpstreamUnavailable("page_customers answered without a customers list", system=self.system)
        total = payload.get("total")
        return {"total": total if isinstance(total, int) and not isinstance(total, bool) else None,
                "customers": customers}
