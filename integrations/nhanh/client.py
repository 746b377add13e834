"""Client for the Nhanh.vn Open API v3.0 (https://apidocs.nhanh.vn/v3).

Every call is ``POST {base_url}/v3.0/{resource}/{action}?appId=..&businessId=..`` with the raw access token
in the ``Authorization`` header and a JSON body. Nhanh reports errors inside the JSON envelope
(``{"code": 0, "errorCode": "ERR_..."}``) rather than through HTTP statuses, so ``check_response`` reads
the envelope first and maps ``errorCode`` onto the typed errors of ``integrations.errors``.

Requests are paced through the budget every process shares (``integrations.ratelimit``): Nhanh counts
150 requests per 30 s per appId + businessId + URL, and locks the URL (ERR_429 with ``unlockedAt``) when it
is exceeded; the lock is recorded in the same store and every client waits it out before sending.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import AuthRejected, BadPayload, RateLimited, RequestRejected, UpstreamError
from ..http import BaseClient
from ..ratelimit import SharedLimiter, shared_limiter
from ..secrets import mask_secret

API_VERSION = "v3.0"

RATE_LIMIT_CODES = {"ERR_429", "ERR_EXCEEDED_RATE_LIMIT"}
# What staff should do about each refusal; the code itself is always shown too.
AUTH_HINTS = {
    "ERR_INVALID_ACCESS_TOKEN": "the access token is invalid or expired: re-authorize the app "
                                "(tokens last one year and cannot be refreshed)",
    "ERR_INVALID_APP_ID": "the appId is not recognised",
    "ERR_INVALID_BUSINESS_ID": "the businessId is not recognised",
    "ERR_BUSINESS_NOT_ENABLE_API": "the shop has not enabled Open API (\"Cho phép kết nối Open API\")",
    "ERR_INVALID_VERSION": "the token was issued for another API version (a v2 token on v3?)",
    "ERR_403": "the token lacks the permission for this API: re-authorize with that permission",
}
VALIDATION_CODES = {"ERR_INVALID_FORM_FIELDS", "ERR_INVALID_DATA"}

# customer/list filters (v3 names) and how Python values are sent for them.
DATE_FILTERS = {"lastBoughtDateFrom", "lastBoughtDateTo"}  # "Y-m-d"
TIMESTAMP_FILTERS = {"updatedAtFrom", "updatedAtTo"}  # unix seconds
CUSTOMER_FILTERS = {"type", "mobile", "ids"} | DATE_FILTERS | TIMESTAMP_FILTERS
# product/list and product/inventory filters (nhanh.md §7a).
PRODUCT_FILTERS = {"ids", "name", "parentId", "gpid", "categoryIds", "brandIds", "status", "price", "imei"} \
    | TIMESTAMP_FILTERS
INVENTORY_FILTERS = {"ids", "name", "depotIds", "categoryId", "status", "brandIds"} | TIMESTAMP_FILTERS
LISTS = {"customer/list": CUSTOMER_FILTERS, "product/list": PRODUCT_FILTERS, "product/inventory": INVENTORY_FILTERS}
TOKEN_EXPIRY_WARNING_DAYS = 30


def is_end_cursor(cursor: Any) -> bool:
    """``paginator.next`` is documented as "array or object"; absent, null, [], {} or "" ends the list."""
    return cursor is None or (isinstance(cursor, list | dict | str) and len(cursor) == 0)


def _encode_filter(name: str, value: Any) -> Any:
    if name in TIMESTAMP_FILTERS and isinstance(value, datetime):
        return int(value.timestamp())
    if name in DATE_FILTERS and isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return value


def _messages_text(payload: dict) -> str:
    """Nhanh's ``messages`` is a string, a list or a field → message map; ERR_429 uses ``message``."""
    messages = payload.get("messages", payload.get("message"))
    if isinstance(messages, dict):
        return "; ".join(f"{field}: {text}" for field, text in messages.items())
    if isinstance(messages, list):
        return "; ".join(str(text) for text in messages)
    return str(messages or "")


class NhanhClient(BaseClient):
    """Nhanh v3.0 for one appId + businessId. ``requests_per_window`` per ``window_seconds`` paces requests
    per URL within the budget every process shares (None: no pacing; ERR_429 answers are then waited out
    through retries). Locks Nhanh reports are honoured either way. ``limiter``: a SharedLimiter to use
    instead of the process's one for the configured store; ``secret_key`` lets ``test_connection`` check
    the token itself."""

    system = "nhanh"

    def __init__(
        self,
        base_url: str,
        *,
        app_id: str,
        business_id: str,
        access_token: str,
        requests_per_window: int | None = 150,
        window_seconds: int = 30,
        limiter: SharedLimiter | None = None,
        secret_key: str = "",
        **base_kwargs,
    ):
        super().__init__(base_url, **base_kwargs)
        self.app_id = str(app_id)
        self.business_id = str(business_id)
        self._access_token = access_token
        self._secret_key = secret_key
        self.requests_per_window = requests_per_window or None
        self.window_seconds = window_seconds
        self._limiter = limiter  # opened on the first request: building a client touches no store
        self.lockouts = 0  # ERR_429 answers this client got (each one is a lock Nhanh imposed)

    @classmethod
    def from_connection(cls, conn, **kw) -> NhanhClient:
        """Build from an ``integrations.models.Connection``; ``kw`` overrides (timeouts, pacing, …)."""
        options = {"requests_per_window": conn.requests_per_window, "window_seconds": conn.window_seconds,
                   "secret_key": conn.secret_key, **kw}
        return cls(conn.base_url, app_id=conn.app_id, business_id=conn.business_id,
                   access_token=conn.access_token, **options)

    @property
    def limiter(self) -> SharedLimiter:
        if self._limiter is None:
            self._limiter = shared_limiter()
        return self._limiter

    @property
    def pacer(self) -> SharedLimiter | None:
        """The limiter that paces requests, None when this client does not pace."""
        return self.limiter if self.requests_per_window else None

    def budget_key(self, path: str) -> str:
        """Nhanh's rate-limit key: appId + businessId + the API URL (host included: sandboxes differ)."""
        return f"nhanh|{self.app_id}|{self.business_id}|{self.base_url}{path}"

    def __repr__(self):
        return (f"<NhanhClient {self.base_url} appId={self.app_id} businessId={self.business_id} "
                f"token={mask_secret(self._access_token)}>")

    def close(self) -> None:
        super().close()  # the shared limiter belongs to the process, not to this client

    # --- transport ---------------------------------------------------------------------------------
    def post(self, endpoint: str, body: Any) -> dict:
        """Call ``endpoint`` (e.g. ``"customer/list"``); returns the whole success envelope."""
        return self.call(
            "POST", f"/{API_VERSION}/{endpoint}",
            params={"appId": self.app_id, "businessId": self.business_id},
            headers={"Authorization": self._access_token},
            json=body,
        )

    def _send_once(self, method: str, path: str, **kwargs) -> Any:
        # Paced per attempt, not per call: retries count against Nhanh's limit too.
        key = self.budget_key(urlsplit(path).path)
        permit = None
        if self.requests_per_window:
            permit = self.limiter.acquire(key, limit=self.requests_per_window, seconds=self.window_seconds)
        else:
            self.limiter.wait_for_lock(key)
        try:
            return super()._send_once(method, path, **kwargs)
        except RateLimited as exc:
            self.lockouts += 1
            if exc.retry_after is not None:
                # Every call made while locked extends the lock: make every process wait it out.
                self.limiter.lock(key, time.time() + exc.retry_after)
            raise
        finally:
            if permit is not None:
                permit.done()

    def check_response(self, response: requests.Response) -> dict:
        status = response.status_code
        if status == 404 and "html" in response.headers.get("Content-Type", ""):
            # What Nhanh answers for an endpoint it does not have (e.g. /v3.0/customer/detail).
            raise RequestRejected(f"no such API endpoint: {urlsplit(response.url).path} (HTML 404)",
                                  system=self.system, status=status)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        is_envelope = isinstance(payload, dict) and "code" in payload
        failed = is_envelope and payload["code"] not in (1, "1")
        # Nhanh does not document HTTP statuses on errors; when a 4xx carries an error envelope its
        # errorCode says more (which credential, when the lock ends) than the status does.
        if status >= 500 or not failed:
            self.raise_for_status(response)
        if not is_envelope:
            snippet = response.text[:200].replace("\n", " ")
            raise BadPayload(f"expected a Nhanh JSON envelope (HTTP {status}): {snippet!r}",
                             system=self.system, status=status)
        if failed:
            raise self._error_from(payload, status)
        if "data" not in payload:
            raise BadPayload("success envelope without 'data'", system=self.system, status=status)
        return payload

    def _error_from(self, payload: dict, status: int) -> UpstreamError:
        code = str(payload.get("errorCode") or "")
        text = _messages_text(payload)
        where = {"system": self.system, "status": status, "code": code}
        if code in RATE_LIMIT_CODES:
            retry_after = self._seconds_until_unlocked(payload.get("data"))
            wait = f"unlocks in {retry_after:.0f} s" if retry_after is not None else "no unlock time given"
            return RateLimited(f"rate limit exceeded, {wait}: {text}", retry_after=retry_after, **where)
        if code in AUTH_HINTS:
            return AuthRejected(f"Nhanh refused the credentials ({code}): {AUTH_HINTS[code]}. {text}".strip(),
                                **where)
        if code in VALIDATION_CODES:
            return RequestRejected(f"Nhanh refused the request ({code}): {text}", **where)
        return UpstreamError(f"Nhanh error {code or '(no errorCode)'}: {text}", **where)

    @staticmethod
    def _seconds_until_unlocked(data: Any) -> float | None:
        if not isinstance(data, dict):
            return None
        unlocked_at, locked_seconds = data.get("unlockedAt"), data.get("lockedSeconds")
        if isinstance(unlocked_at, int | float):
            return max(unlocked_at - time.time(), 0.0)
        if isinstance(locked_seconds, int | float):
            return max(float(locked_seconds), 0.0)
        return None

    # --- customers ---------------------------------------------------------------------------------
    def list_page(
        self, endpoint: str, filters: dict | None = None, *, next_cursor: Any = None, size: int = 100
    ) -> tuple[list[dict], Any]:
        """One page of a cursor-paged list (``customer/list``, ``product/list``, ``product/inventory``) in
        Nhanh's own order: the raw rows (not validated here: unknown fields, missing optional ones and numbers
        as strings are the parser's business) and the cursor of the next page exactly as Nhanh sent it (an
        object or an array), None at the end. ``filters`` take the v3 names; ``datetime`` values for
        ``updatedAt*`` and ``date`` values for ``lastBoughtDate*`` are converted, None values dropped. No
        ``sort``: the documented orders are not needed to page."""
        known = LISTS[endpoint]
        unknown = set(filters or {}) - known
        if unknown:
            # Nhanh ignores filters it does not know: a typo would silently turn into a full pull.
            raise ValueError(f"unknown {endpoint} filters {sorted(unknown)}; known: {sorted(known)}")
        encoded = {name: _encode_filter(name, value) for name, value in (filters or {}).items()
                   if value is not None}
        paginator: dict[str, Any] = {"size": size}
        if not is_end_cursor(next_cursor):
            paginator["next"] = next_cursor
        payload = self.post(endpoint, {"filters": encoded, "paginator": paginator})
        rows = payload["data"]
        page_info = payload.get("paginator") or {}
        if not isinstance(rows, list) or not isinstance(page_info, dict):
            raise BadPayload(f"{endpoint}: expected 'data' to be a list and 'paginator' an object",
                             system=self.system)
        cursor = page_info.get("next")
        if isinstance(cursor, bool):
            raise BadPayload(f"{endpoint}: paginator.next is not a cursor: {cursor!r}", system=self.system)
        return rows, None if is_end_cursor(cursor) else cursor

    def iter_pages(
        self, endpoint: str, filters: dict | None = None, *, start_cursor: Any = None, size: int = 100
    ) -> Iterator[tuple[list[dict], Any]]:
        """Yield ``(rows, cursor)`` page by page; ``cursor`` resumes right after that page (a checkpoint)
        and is None with the last page. Only one page is held at a time."""
        cursor = start_cursor
        while True:
            rows, next_cursor = self.list_page(endpoint, filters, next_cursor=cursor, size=size)
            if next_cursor is not None and next_cursor == cursor:
                raise BadPayload(f"{endpoint}: cursor did not advance past {cursor!r}", system=self.system)
            yield rows, next_cursor
            if next_cursor is None:
                return
            cursor = next_cursor

    # --- customers ---------------------------------------------------------------------------------
    def list_customers(
        self, filters: dict | None = None, *, next_cursor: Any = None, size: int = 100
    ) -> tuple[list[dict], Any]:
        """One page of ``customer/list`` (see ``list_page``)."""
        return self.list_page("customer/list", filters, next_cursor=next_cursor, size=size)

    def iter_customer_pages(
        self, filters: dict | None = None, *, start_cursor: Any = None, size: int = 100
    ) -> Iterator[tuple[list[dict], Any]]:
        return self.iter_pages("customer/list", filters, start_cursor=start_cursor, size=size)

    # --- products ----------------------------------------------------------------------------------
    def iter_product_pages(
        self, filters: dict | None = None, *, start_cursor: Any = None, size: int = 100, stock_only: bool = False
    ) -> Iterator[tuple[list[dict], Any]]:
        """``product/list`` pages (the full v3 record with ``inventory.depots``), or with ``stock_only``
        ``product/inventory`` pages (``{productId, barcode, name, prices, inventory}``)."""
        endpoint = "product/inventory" if stock_only else "product/list"
        return self.iter_pages(endpoint, filters, start_cursor=start_cursor, size=size)

    # --- app ---------------------------------------------------------------------------------------
    def test_connection(self) -> str:
        """One cheap authenticated call; returns what staff see ("OK …"), raises UpstreamError otherwise.
        With the secretKey: ``app/checkaccesstoken`` (the token's business, expiry and permissions);
        without it: one customer/list row."""
        if not self._secret_key:
            self.list_customers(size=1)
            return (f"OK: Nhanh business {self.business_id} (appId {self.app_id}) answered customer/list. "
                    "No secretKey is stored, so the token's expiry was not checked.")
        grant = self.check_token(self._secret_key)
        business = str(grant.get("businessId", ""))
        if business and business != self.business_id:
            raise AuthRejected(f"the access token belongs to Nhanh business {business}, but this connection "
                               f"is for business {self.business_id}", system=self.system)
        text = f"OK: Nhanh business {self.business_id} (appId {self.app_id})"
        expires = grant.get("expiredAt")
        if isinstance(expires, int | float) or (isinstance(expires, str) and expires.isdigit()):
            expires_at = datetime.fromtimestamp(int(expires), tz=UTC)
            days = (expires_at - datetime.now(tz=UTC)).days
            text += f"; token valid until {expires_at:%Y-%m-%d} ({days} days)"
            if days < TOKEN_EXPIRY_WARNING_DAYS:
                text += ": re-authorize the app soon (Nhanh tokens cannot be refreshed)"
        permissions = grant.get("permissions")
        if isinstance(permissions, list):
            text += f"; {len(permissions)} permissions"
        return text + "."

    def check_token(self, secret_key: str) -> dict:
        """``app/checkaccesstoken``: the token's businessId, expiredAt (unix s), depotIds, permissions."""
        data = self.post("app/checkaccesstoken", {"secretKey": secret_key})["data"]
        if not isinstance(data, dict):
            raise BadPayload("app/checkaccesstoken: 'data' is not an object", system=self.system)
        # The answer echoes the token; leave it out so the result is safe to log or show.
        return {key: value for key, value in data.items() if key != "accessToken"}
