"""Client for the Shopee Open Platform v2 ads (marketing) API (fact sheet: shared/upstreams/shopee.md).

- Every call is signed: ``sign`` = hex HMAC-SHA256 with the partner key over ``partner_id + api_path +
  timestamp`` (public calls) plus ``access_token + shop_id`` (shop calls). The body is not signed. The
  timestamp is taken per attempt, so a retry after a long back-off is not refused as expired.
- The envelope: success ⇔ ``error`` is empty or missing, whatever the HTTP status; the body is read first.
- ``ads.rate_limit.*``, ``error_rate_limit``, HTTP 429, ``error_server`` and 5xx are retried with backoff
  (``BaseClient.call``); anything else is a typed error.
- The access token lives 4 hours. The client asks its ``token_source`` for one before each call and, once,
  for a new one when Shopee answers that the token is invalid or expired. The token source (in ``ads``)
  refreshes under a row lock: the refresh token is single use.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any

import requests

from ..errors import AuthRejected, BadPayload, RateLimited, RequestRejected, UpstreamError, UpstreamUnavailable
from ..http import BaseClient, parse_retry_after
from ..secrets import mask_secret

API = "/api/v2"
MAX_IDS = 100  # campaign_id_list limit of the setting-info and performance endpoints
ID_PAGE = 5000  # get_product_level_campaign_id_list page size (the spec sample's value)
INFO_TYPES = (1, 2, 3, 4)  # common, manual bidding, auto bidding, auto product ads

RATE_LIMIT_CODES = {"error_rate_limit", "ads.rate_limit.exceed_partner_api", "ads.rate_limit.exceed_shop_api",
                    "ads.rate_limit.exceed_api", "ads.rate_limit.campaign_level"}
TOKEN_CODES = {"invalid_access_token", "invalid_acceess_token"}  # (sic) Shopee spells it both ways
SERVER_CODES = {"error_server", "error_busi_server", "error_inner"}
PARAM_CODES = {"error_param", "error_data", "ads.api.http_method_not_allowed", "ads.shop.campaign_not_match",
               "error_not_found"}


class ShopeeError(UpstreamError):
    """Shopee answered with an ``error`` code that is not retried (``code`` holds it)."""


class SignatureRejected(AuthRejected):
    """``error_sign``: the partner key or the signed string is wrong."""


class TokenInvalid(AuthRejected):
    """The access token is unknown or expired (``error_auth`` "Invalid access_token." or ``invalid_access_token``)."""


class RefreshRejected(AuthRejected):
    """The refresh token was refused: the shop must authorize the app again."""


def sign(partner_key: str, *parts: Any) -> str:
    message = "".join(str(p) for p in parts)
    return hmac.new(partner_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def ddmmyyyy(day: date) -> str:
    return day.strftime("%d-%m-%Y")


def chunks_of(ids: list[int], size: int = MAX_IDS) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


TokenSource = Callable[..., str]  # token_source(rejected: str | None = None) -> access token


class ShopeeClient(BaseClient):
    """One shop's ads API. ``token_source(rejected=None)`` returns a valid access token (``rejected``: the
    token Shopee just refused, so a new one is needed). Without one, ``access_token`` is used as is."""

    system = "shopee"

    def __init__(self, base_url: str, *, partner_id: int, partner_key: str, shop_id: int | None = None,
                 access_token: str = "", token_source: TokenSource | None = None, clock=time.time,
                 rate_limit_pause: float = 1.0,
                 **base_kwargs):
        super().__init__(base_url, **base_kwargs)
        self.partner_id = int(partner_id)
        self._partner_key = partner_key
        self.shop_id = int(shop_id) if shop_id is not None else None
        self._access_token = access_token
        self.token_source = token_source
        self.clock = clock
        self.calls = 0
        self.token_renewals = 0
        self.rate_limit_pause = rate_limit_pause

    @classmethod
    def from_connection(cls, conn, **kw) -> ShopeeClient:
        """A partner-level client from ``integrations.models.Connection`` (``app_id`` = partner id,
        ``secret_key`` = partner key); pass ``shop_id`` and ``access_token``/``token_source`` for shop calls."""
        return cls(conn.base_url, partner_id=int(conn.app_id), partner_key=conn.secret_key, **kw)

    def __repr__(self):
        return (f"<ShopeeClient {self.base_url} partner={self.partner_id} shop={self.shop_id} "
                f"token={mask_secret(self._access_token)}>")

    # --- transport ---------------------------------------------------------------------------------
    def _token(self, rejected: str | None = None) -> str:
        if self.token_source is not None:
            self._access_token = self.token_source(rejected=rejected)
        elif rejected is not None:
            return ""
        return self._access_token

    def _send_once(self, method: str, path: str, *, token: str | None = None, params: dict | None = None,
                   **kwargs) -> Any:
        # Signed per attempt: a fresh timestamp on every retry.
        ts = int(self.clock())
        query: dict[str, Any] = {"partner_id": self.partner_id, "timestamp": ts}
        if token is None:
            query["sign"] = sign(self._partner_key, self.partner_id, path, ts)
        else:
            query.update(access_token=token, shop_id=self.shop_id,
                         sign=sign(self._partner_key, self.partner_id, path, ts, token, self.shop_id))
        query.update(params or {})
        self.calls += 1
        return super()._send_once(method, path, params=query, **kwargs)

    def shop_call(self, method: str, api: str, params: dict | None = None, body: dict | None = None) -> Any:
        """Call a shop-level API (``api`` like ``"ads/get_total_balance"``); returns ``response``."""
        if self.shop_id is None:
            raise ValueError("this ShopeeClient has no shop_id: shop-level calls need one")
        path = f"{API}/{api}"
        token = self._token()
        for renewed in (False, True):
            try:
                payload = self.call(method, path, token=token, params=params,
                                    **({"json": body} if body is not None else {}))
                return payload.get("response")
            except TokenInvalid:
                if renewed or self.token_source is None:
                    raise
                self.token_renewals += 1
                token = self._token(rejected=token)
        raise AssertionError("unreachable")

    def check_response(self, response: requests.Response) -> dict:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.raise_for_status(response)  # 429 / 5xx without a JSON body
            snippet = response.text[:200].replace("\n", " ")
            raise BadPayload(f"expected a JSON object (HTTP {status}): {snippet!r}", system=self.system,
                             status=status)
        code = payload.get("error") or ""
        if not code:
            if status >= 500 or status == 429:
                self.raise_for_status(response)
            return payload
        message = str(payload.get("message") or "")
        where = {"system": self.system, "status": status, "code": code}
        text = f"{code}: {message}" if message else code
        if code in RATE_LIMIT_CODES or code.startswith("ads.rate_limit.") or status == 429:
            return self._raise(RateLimited(f"rate limited ({text})", **where,
                                           retry_after=parse_retry_after(response.headers.get("Retry-After"))))
        if code in SERVER_CODES or status >= 500:
            return self._raise(UpstreamUnavailable(f"Shopee server error ({text})", **where))
        if code == "error_sign":
            return self._raise(SignatureRejected(f"Shopee refused the signature ({text}): check the partner "
                                                 "id and key", **where))
        if code in TOKEN_CODES or (code == "error_auth" and "access_token" in message.lower()):
            return self._raise(TokenInvalid(f"Shopee refused the access token ({text})", **where))
        if code in {"error_auth", "invalid_partner_id", "error_partner_key_expired", "shop_no_linked",
                    "partner_shop_no_link", "shop_banned", "error_api_permission", "source_ip_undeclared"}:
            return self._raise(AuthRejected(f"Shopee refused the credentials ({text})", **where))
        if code in PARAM_CODES or code.startswith(("ads.performance.", "ads.campaign.", "ads.edit.")):
            return self._raise(RequestRejected(f"Shopee refused the request ({text})", **where))
        return self._raise(ShopeeError(f"Shopee error ({text})", **where))

    def _wait(self, state) -> float:
        # Shopee sends no Retry-After; integrators space ads calls about a second apart after a rate limit.
        wait = super()._wait(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is None:
            return max(wait, self.rate_limit_pause)
        return wait

    @staticmethod
    def _raise(exc: UpstreamError):
        raise exc

    # --- tokens (public calls: flat responses) ---------------------------------------------------------
    def refresh_access_token(self, refresh_token: str, shop_id: int) -> dict:
        """``auth/access_token/get``: a new access token AND a new refresh token (the old one is burnt)."""
        try:
            payload = self.call("POST", f"{API}/auth/access_token/get", json={
                "refresh_token": refresh_token, "partner_id": self.partner_id, "shop_id": int(shop_id)})
        except (TokenInvalid, RequestRejected, ShopeeError) as exc:
            raise RefreshRejected(f"refreshing the token of shop {shop_id} failed: {exc}", system=self.system,
                                  code=exc.code, status=exc.status) from exc
        return self._token_answer(payload)

    def get_access_token(self, code: str, shop_id: int) -> dict:
        """``auth/token/get``: exchange the seller's one-time ``code`` for the first token pair."""
        payload = self.call("POST", f"{API}/auth/token/get", json={
            "code": code, "partner_id": self.partner_id, "shop_id": int(shop_id)})
        return self._token_answer(payload)

    def _token_answer(self, payload: dict) -> dict:
        missing = [k for k in ("access_token", "refresh_token", "expire_in") if k not in payload]
        if missing:
            raise BadPayload(f"token answer without {missing}", system=self.system)
        return {"access_token": payload["access_token"], "refresh_token": payload["refresh_token"],
                "expire_in": int(payload["expire_in"])}

    # --- ads ---------------------------------------------------------------------------------------------
    def campaign_ids(self, ad_type: str = "all", page_size: int = ID_PAGE) -> list[dict]:
        """Every product-level campaign of the shop: ``[{"campaign_id", "ad_type"}]`` in served order."""
        found: list[dict] = []
        offset = 0
        while True:
            response = self.shop_call("GET", "ads/get_product_level_campaign_id_list",
                                      {"ad_type": ad_type, "offset": offset, "limit": page_size}) or {}
            page = response.get("campaign_list") or []
            if not isinstance(page, list):
                raise BadPayload("campaign_list is not a list", system=self.system)
            found.extend(page)
            if not response.get("has_next_page") or not page:
                return found
            offset += page_size

    def campaign_settings(self, campaign_ids: Iterable[int], info_types: Iterable[int] = INFO_TYPES) -> list[dict]:
        """Settings of the campaigns, ≤100 ids a call (split here)."""
        ids = [int(i) for i in campaign_ids]
        types = ",".join(str(t) for t in info_types)
        found: list[dict] = []
        for part in chunks_of(ids):
            response = self.shop_call("GET", "ads/get_product_level_campaign_setting_info", {
                "campaign_id_list": ",".join(map(str, part)), "info_type_list": types}) or {}
            found.extend(response.get("campaign_list") or [])
        return found

    def campaign_daily_performance(self, campaign_ids: Iterable[int], start: date, end: date) -> list[dict]:
        """``[{"campaign_id", ..., "metrics_list": [...]}]``, ≤100 ids a call. The documented response is an
        array wrapping ``{shop_id, region, campaign_list}``; a live client reads ``campaign_list`` directly
        from an object: both are accepted."""
        if start >= end:
            raise ValueError("the daily performance APIs need start_date < end_date (use hourly for one day)")
        found: list[dict] = []
        for part in chunks_of([int(i) for i in campaign_ids]):
            response = self.shop_call("GET", "ads/get_product_campaign_daily_performance", {
                "start_date": ddmmyyyy(start), "end_date": ddmmyyyy(end),
                "campaign_id_list": ",".join(map(str, part))})
            blocks = response if isinstance(response, list) else [response or {}]
            for block in blocks:
                if isinstance(block, dict):
                    found.extend(block.get("campaign_list") or [])
        return found

    def shop_daily_performance(self, start: date, end: date) -> list[dict]:
        if start >= end:
            raise ValueError("the daily performance APIs need start_date < end_date")
        response = self.shop_call("GET", "ads/get_all_cpc_ads_daily_performance",
                                  {"start_date": ddmmyyyy(start), "end_date": ddmmyyyy(end)})
        if isinstance(response, dict):  # tolerate an object wrapper
            response = response.get("list") or response.get("data") or []
        return list(response or [])

    def edit_budget(self, campaign_id: int, budget: float, *, reference_id: str, ad_type: str = "manual") -> Any:
        """``edit_manual_product_ads`` (or ``edit_auto_product_ads``) with ``change_budget``. ``reference_id``
        is Shopee's idempotency key: reusing one makes the call fail."""
        api = "ads/edit_auto_product_ads" if ad_type == "auto" else "ads/edit_manual_product_ads"
        return self.shop_call("POST", api, body={"reference_id": reference_id, "campaign_id": int(campaign_id),
                                                 "edit_action": "change_budget", "budget": float(budget)})

    def total_balance(self) -> dict:
        return self.shop_call("GET", "ads/get_total_balance") or {}
