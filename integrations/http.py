"""The base every upstream client builds on: one requests.Session with connection reuse, connect/read
timeouts, typed errors, and retries with exponential backoff + jitter that honour Retry-After.

Retries are done here with tenacity rather than urllib3's Retry because the upstreams signal rate
limits in different ways (Nhanh in the JSON body, Shopify as THROTTLED with HTTP 200) and all of them
must take the same path: subclasses turn a response into a typed error in ``check_response``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from .errors import (
    AuthRejected,
    BadPayload,
    RateLimited,
    RequestRejected,
    UpstreamError,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


class BaseClient:
    system = "upstream"

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 6,
        max_retry_seconds: float = 600.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        sleep=time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds
        self.backoff = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self.sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "ShopBridge/0.1"
        self.retries = 0  # how many retries this client made (shown in job metadata)
        # Where the outcome of calls is recorded for the overview (integrations.status); None: not recorded.
        # ``client_for`` sets the system; a client per Pancake page or Shopee shop a "system:id" key.
        self.status_key: str | None = None

    def close(self) -> None:
        self.session.close()

    # --- subclasses override -------------------------------------------------------------------
    def check_response(self, response: requests.Response) -> Any:
        """Turn a response into data or a typed error. The default reads HTTP status and JSON."""
        self.raise_for_status(response)
        return self.json(response)

    # --- helpers ---------------------------------------------------------------------------------
    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            snippet = response.text[:200].replace("\n", " ")
            raise BadPayload(f"response is not JSON (HTTP {response.status_code}): {snippet!r}",
                             system=self.system, status=response.status_code) from exc

    def raise_for_status(self, response: requests.Response) -> None:
        status = response.status_code
        if 300 <= status < 400:
            raise RequestRejected(f"redirected (HTTP {status}) to {response.headers.get('Location', '?')[:200]!r}: "
                                  "not followed; check the connection's base URL", system=self.system, status=status)
        if status < 400:
            return
        if status == 429:
            raise RateLimited("rate limited (HTTP 429)", system=self.system, status=status,
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if status in (401, 403):
            raise AuthRejected("credentials rejected", system=self.system, status=status)
        if status >= 500:
            raise UpstreamUnavailable(f"server error HTTP {status}", system=self.system, status=status)
        raise RequestRejected(f"request refused HTTP {status}: {response.text[:200]!r}",
                              system=self.system, status=status)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = self.backoff(state)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            # Honour the server's word, plus a little jitter so parallel workers don't stampede.
            return exc.retry_after + min(backoff, 1.0)
        return backoff

    def _before_sleep(self, state: RetryCallState) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %s failed (%s); retrying in %.1f s", self.system, state.attempt_number, exc,
                    state.next_action.sleep if state.next_action else 0)

    def status_key_for(self, path: str) -> str | None:
        """The status key a call to ``path`` reports under (a client for several pages may refine it)."""
        return self.status_key

    def observed(self, path: str, fn, *args, **kwargs) -> Any:
        """Run ``fn`` (a call with its retries) and record its outcome for the overview (integrations.status)."""
        key = self.status_key_for(path)
        if key is None:
            return fn(*args, **kwargs)
        from .status import counts_as_failure, record_call

        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            record_call(key, not counts_as_failure(exc), str(exc))
            raise
        record_call(key, True)
        return result

    def call(self, method: str, path: str, **kwargs) -> Any:
        """Send a request with retries; returns what ``check_response`` makes of the response."""
        return self.observed(path, self._call, method, path, **kwargs)

    def _call(self, method: str, path: str, **kwargs) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, UpstreamError) and e.retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_retry_seconds),
            sleep=self.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(self._send_once, method, path, **kwargs)

    def _send_once(self, method: str, path: str, **kwargs) -> Any:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        kwargs.setdefault("timeout", self.timeout)
        # Never follow a redirect: requests keeps custom credential headers (X-Shopify-Access-Token …) when it
        # follows one to another host, and a secret goes only to the host it was entered for.
        kwargs["allow_redirects"] = False
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.Timeout as exc:
            raise UpstreamUnavailable(f"timed out ({type(exc).__name__})", system=self.system) from exc
        except requests.ConnectionError as exc:
            raise UpstreamUnavailable(f"cannot connect to {self.base_url}", system=self.system) from exc
        return self.check_response(response)
