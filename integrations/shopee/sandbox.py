"""A local Shopee Open Platform v2 (ads module) over generated shops and campaigns, served by
``integrations.sandbox.server`` under ``/shopee``.

Shops come from ``SandboxOptions.shopee_shops`` (campaign counts, e.g. ``[35, 335, 917, 10000]``): shop
``SHOP_ID_BASE + i`` has that many campaigns. Campaigns, settings and daily results are computed on demand
from the seed; only changes (budgets edited, campaigns added/removed through the control API) are stored.

Checks as Shopee does (fact sheet §7): the signature (``error_sign`` "Wrong sign."), the timestamp (±300 s,
``error_param``), the access token (4 h; ``error_auth`` "Invalid access_token."), single-use refresh tokens,
≤100 ids, the date rules, GET vs POST, campaigns of another shop, reused ``reference_id``; a window limit per
shop answered ``ads.rate_limit.exceed_shop_api`` with HTTP 429 (unconfirmed status; one live client saw 429).

Test hooks (``POST /_sandbox/shopee/<action>``): ``authorize`` {shop_id} → one-time code; ``issue_tokens``
{shop_id} → a token pair directly; ``expire_tokens`` {shop_id}; ``fail_chunk`` {shop_id, chunk_index,
chunk_size, times, error}; ``fail_campaigns`` {campaign_ids, times, error}; ``add_campaigns`` /
``remove_campaigns`` {shop_id, count}; ``campaigns`` {shop_id} (also GET with ``?shop_id=``) → the truth.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..sandbox.base import SandboxApp, SandboxRequest, SandboxResponse
from ..sandbox.population import FastRandom

SANDBOX_PARTNER_ID = 1_000_001
SANDBOX_PARTNER_KEY = "sandbox-shopee-partner-key-4f1c2e9a7b"  # noqa: S105 - public, sandbox only
SHOP_ID_BASE = 600_001
CAMPAIGN_ID_BASE = 10_000_000
TOKEN_LIFETIME = 4 * 3600
TIMESTAMP_SKEW = 300
MAX_IDS = 100
DEFAULT_SHOPS = (35, 335, 917, 10000)
VN = timezone(timedelta(hours=7))

PRODUCTS = ["Áo thun cotton", "Quần jean nữ", "Váy hoa nhí", "Dép quai ngang", "Son kem lì", "Nồi chiên không dầu",
            "Tai nghe bluetooth", "Ốp lưng iPhone", "Bình giữ nhiệt", "Khẩu trang 4D", "Sữa rửa mặt", "Balo laptop"]
STATUSES = ["ongoing"] * 6 + ["paused", "scheduled", "ended"]
SHOP_API = "/api/v2/ads/"
GET_APIS = {"get_product_level_campaign_id_list", "get_product_level_campaign_setting_info",
            "get_product_campaign_daily_performance", "get_all_cpc_ads_daily_performance", "get_total_balance"}
POST_APIS = {"edit_manual_product_ads", "edit_auto_product_ads"}


def _sign(key: str, *parts: Any) -> str:
    return hmac.new(key.encode(), "".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()


def _error(code: str, message: str, status: int = 200, **extra) -> SandboxResponse:
    body = {"error": code, "message": message, "request_id": secrets.token_hex(16)}
    return SandboxResponse(status, body, extra.get("headers") or {})


def _ok(response: Any, *, terse: bool = False) -> SandboxResponse:
    # Some ads samples omit error/message on success; half the answers do here, so clients must cope.
    body: dict[str, Any] = {"request_id": secrets.token_hex(16), "response": response}
    if not terse:
        body.update(error="", message="", warning="")
    return SandboxResponse(200, body)


def _parse_date(value: str | None) -> date | None:
    try:
        return datetime.strptime(value or "", "%d-%m-%Y").date()
    except ValueError:
        return None


class ShopeeSandbox(SandboxApp):
    name = "shopee"
    request_limit = (20, 1.0)  # per shop; Shopee publishes no numbers (unconfirmed)

    def __init__(self, options, population=None):
        super().__init__(options, population)
        counts = getattr(options, "shopee_shops", None)
        counts = list(DEFAULT_SHOPS if counts is None else counts)
        self.seed = options.seed
        self.lock = threading.Lock()
        # shop_id → list of campaign ids (served order)
        self.shops: dict[int, list[int]] = {}
        self.next_campaign: dict[int, int] = {}
        for i, count in enumerate(counts):
            shop_id = SHOP_ID_BASE + i
            base = CAMPAIGN_ID_BASE * (i + 1)
            self.shops[shop_id] = [base + 7 * k for k in range(count)]
            self.next_campaign[shop_id] = base + 7 * count
        self.campaign_shop: dict[int, int] = {c: s for s, ids in self.shops.items() for c in ids}
        self.budgets: dict[int, float] = {}
        self.access_tokens: dict[str, tuple[int, float]] = {}  # token → (shop_id, expires at, unix s)
        self.refresh_tokens: dict[str, int] = {}  # single use: removed when used
        self.codes: dict[str, int] = {}
        self.refreshes: dict[int, int] = {}
        self.token_lifetime = TOKEN_LIFETIME
        self.failures: dict[int, list] = {}  # campaign id → [remaining (−1: always), error code]
        self.references: set[str] = set()
        self.edits: list[dict] = []
        self.calls: dict[str, int] = {}

    # --- generated data -------------------------------------------------------------------------------
    def _rng(self, *key: int) -> FastRandom:
        value = self.seed
        for k in key:
            value = (value * 1_000_003 + k) & 0xFFFFFFFFFFFF
        return FastRandom(value)

    def _is_manual(self, campaign_id: int) -> bool:
        return self._rng(campaign_id).random() < 0.6  # the first draw of campaign()

    def campaign(self, campaign_id: int) -> dict:
        rng = self._rng(campaign_id)
        manual = rng.random() < 0.6
        budget = self.budgets.get(campaign_id, float(rng.choice([0, 50_000, 100_000, 200_000, 500_000])))
        start = int(datetime(2026, 1, 1, tzinfo=VN).timestamp()) + rng.randint(0, 300) * 86400
        item = rng.randint(10_000_000, 99_999_999)
        common = {"ad_type": "manual" if manual else "auto",
                  "ad_name": f"{rng.choice(PRODUCTS)} #{campaign_id % 10_000}",
                  "campaign_status": rng.choice(STATUSES), "bidding_method": "manual" if manual else "auto",
                  "campaign_placement": rng.choice(["search", "discovery", "all"]), "campaign_budget": budget,
                  "item_id_list": [item] if manual else [item, item + 1],
                  "campaign_duration": {"start_time": start, "end_time": 0}}
        info: dict[str, Any] = {"campaign_id": campaign_id, "common_info": common}
        if manual:
            info["manual_bidding_info"] = {"enhanced_cpc": rng.random() < 0.5, "selected_keywords": [
                {"keyword": rng.choice(PRODUCTS).lower(), "status": "normal", "match_type": "broad",
                 "bid_price_per_click": round(rng.uniform(500, 5000), 0)}], "discovery_ads_locations": []}
        else:
            info["auto_bidding_info"] = {"roas_target": round(rng.uniform(2, 10), 1)}
            info["auto_product_ads_info"] = [{"product_name": common["ad_name"], "status": "ongoing",
                                              "item_id": item}]
        return info

    def metrics(self, campaign_id: int, day: date) -> dict:
        rng = self._rng(campaign_id, day.toordinal())
        impressions = rng.randint(0, 5000)
        clicks = int(impressions * rng.uniform(0, 0.06))
        expense = round(clicks * rng.uniform(300, 3000), 0)
        orders = int(clicks * rng.uniform(0, 0.1))
        direct = int(orders * 0.7)
        gmv = round(orders * rng.uniform(80_000, 400_000), 0)
        direct_gmv = round(gmv * 0.7, 0)
        return {"date": day.strftime("%d-%m-%Y"), "impression": impressions, "clicks": clicks,
                "ctr": round(100 * clicks / impressions, 2) if impressions else 0, "expense": expense,
                "broad_gmv": gmv, "broad_order": orders, "broad_order_amount": orders + orders // 3,
                "broad_roi": round(gmv / expense, 2) if expense else 0,
                "broad_cir": round(100 * expense / gmv, 2) if gmv else 0, "cr": 0, "cpc": 0,
                "direct_order": direct, "direct_order_amount": direct + direct // 3, "direct_gmv": direct_gmv,
                "direct_roi": round(direct_gmv / expense, 2) if expense else 0,
                "direct_cir": round(100 * expense / direct_gmv, 2) if direct_gmv else 0, "direct_cr": 0,
                "cpdc": 0}

    def shop_metrics(self, shop_id: int, day: date) -> dict:
        rows = [self.metrics(c, day) for c in self.shops[shop_id][:200]]  # a sample: cheap and stable
        expense = sum(r["expense"] for r in rows)
        broad_gmv, direct_gmv = sum(r["broad_gmv"] for r in rows), sum(r["direct_gmv"] for r in rows)
        impressions, clicks = sum(r["impression"] for r in rows), sum(r["clicks"] for r in rows)
        return {"date": day.strftime("%d-%m-%Y"), "impression": impressions, "clicks": clicks,
                "ctr": round(100 * clicks / impressions, 2) if impressions else 0, "expense": expense,
                "direct_order": sum(r["direct_order"] for r in rows),
                "broad_order": sum(r["broad_order"] for r in rows),
                "direct_conversions": 0, "broad_conversions": 0,
                "direct_item_sold": sum(r["direct_order_amount"] for r in rows),
                "broad_item_sold": sum(r["broad_order_amount"] for r in rows), "direct_gmv": direct_gmv,
                "broad_gmv": broad_gmv, "cost_per_conversion": 0,
                "direct_roas": round(direct_gmv / expense, 2) if expense else 0,
                "broad_roas": round(broad_gmv / expense, 2) if expense else 0}

    # --- requests -------------------------------------------------------------------------------------
    def rate_limit_key(self, request: SandboxRequest) -> str | None:
        if not request.path.startswith(SHOP_API):
            return None
        return f"shop:{request.arg('shop_id')}"

    def rate_limited_response(self, request: SandboxRequest, retry_after: float) -> SandboxResponse:
        response = _error("ads.rate_limit.exceed_shop_api", "Too many requests for this shop, please retry later.",
                          429)
        response.rate_limited = True  # counted in the status (GET /_sandbox/)
        return response

    def server_error_response(self, request: SandboxRequest, status: int) -> SandboxResponse:
        return _error("error_server", "Something wrong. Please try later.", status)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path
        refusal = self._check_common(request, shop_call=path.startswith(SHOP_API))
        if refusal is not None:
            return refusal
        if path == "/api/v2/auth/access_token/get":
            return self.refresh(request)
        if path == "/api/v2/auth/token/get":
            return self.token_get(request)
        if not path.startswith(SHOP_API):
            return _error("error_not_found", f"api not found: {path}", 404)
        api = path[len(SHOP_API):]
        if api not in GET_APIS | POST_APIS:
            return _error("error_not_found", f"api not found: {path}", 404)
        wanted = "GET" if api in GET_APIS else "POST"
        if request.method != wanted:
            return _error("ads.api.http_method_not_allowed", f"{api} only accepts {wanted}.")
        shop_id = int(request.arg("shop_id"))
        if shop_id not in self.shops:
            return _error("error_shop", "shop_id is not found.")
        with self.lock:
            self.calls[api] = self.calls.get(api, 0) + 1
        return getattr(self, api)(request, shop_id)

    def _check_common(self, request: SandboxRequest, *, shop_call: bool) -> SandboxResponse | None:
        args = {k: request.arg(k) for k in ("partner_id", "timestamp", "sign", "access_token", "shop_id")}
        required = ["partner_id", "timestamp", "sign"] + (["access_token", "shop_id"] if shop_call else [])
        missing = [k for k in required if not args[k]]
        if missing:
            return _error("error_param", f"There is no {missing[0]} in query.")
        if args["partner_id"] != str(SANDBOX_PARTNER_ID):
            return _error("error_auth", "Invalid partner_id.", 403)
        try:
            ts = int(args["timestamp"])
        except ValueError:
            return _error("error_param", "Invalid timestamp.")
        if abs(time.time() - ts) > TIMESTAMP_SKEW:
            return _error("error_param", "Timestamp is expired.")
        parts = [args["partner_id"], request.path, ts]
        if shop_call:
            parts += [args["access_token"], args["shop_id"]]
        if not hmac.compare_digest(_sign(SANDBOX_PARTNER_KEY, *parts), args["sign"] or ""):
            return _error("error_sign", "Wrong sign.", 403)
        if shop_call:
            if self.faults.auth_reject:
                return _error("error_auth", "Invalid access_token.", 403)
            with self.lock:
                held = self.access_tokens.get(args["access_token"])
            if held is None or held[1] <= time.time() or str(held[0]) != args["shop_id"]:
                return _error("error_auth", "Invalid access_token.", 403)
        return None

    # --- tokens ---------------------------------------------------------------------------------------
    def _issue(self, shop_id: int) -> dict:
        access, refresh = f"sbx-at-{secrets.token_hex(12)}", f"sbx-rt-{secrets.token_hex(12)}"
        with self.lock:
            self.access_tokens[access] = (shop_id, time.time() + self.token_lifetime)
            self.refresh_tokens[refresh] = shop_id
        return {"access_token": access, "refresh_token": refresh, "expire_in": self.token_lifetime}

    def refresh(self, request: SandboxRequest) -> SandboxResponse:
        body = request.json() or {}
        shop_id = body.get("shop_id")
        with self.lock:
            owner = self.refresh_tokens.pop(body.get("refresh_token") or "", None)  # single use: burnt here
            if owner is not None:
                self.refreshes[owner] = self.refreshes.get(owner, 0) + 1
        if owner is None or owner != shop_id:
            return _error("error_param", "Invalid refresh_token.", 403)
        tokens = self._issue(owner)
        return SandboxResponse(200, {"error": "", "message": "", "request_id": secrets.token_hex(16), **tokens,
                                     "shop_id": owner, "partner_id": SANDBOX_PARTNER_ID})

    def token_get(self, request: SandboxRequest) -> SandboxResponse:
        body = request.json() or {}
        with self.lock:
            shop_id = self.codes.pop(body.get("code") or "", None)
        if shop_id is None or shop_id != body.get("shop_id"):
            return _error("invalid_code", "Invalid code.", 403)
        tokens = self._issue(shop_id)
        return SandboxResponse(200, {"error": "", "message": "", "request_id": secrets.token_hex(16), **tokens,
                                     "partner_id": SANDBOX_PARTNER_ID, "shop_id_list": [shop_id]})

    # --- ads APIs -------------------------------------------------------------------------------------
    def _ids(self, request: SandboxRequest, shop_id: int) -> list[int] | SandboxResponse:
        raw = request.arg("campaign_id_list") or ""
        try:
            ids = [int(x) for x in raw.split(",") if x.strip()]
        except ValueError:
            return _error("error_param", "campaign_id_list must be comma-separated integers.")
        if not ids:
            return _error("error_param", "campaign_id_list is required.")
        if len(ids) > MAX_IDS:
            return _error("error_param", f"campaign_id_list accepts at most {MAX_IDS} ids.")
        if any(self.campaign_shop.get(i) != shop_id for i in ids):
            return _error("ads.shop.campaign_not_match", "Campaign does not belong to this shop.")
        with self.lock:
            for cid in ids:
                rule = self.failures.get(cid)
                if rule and rule[0] != 0:
                    if rule[0] > 0:
                        rule[0] -= 1
                    status = 429 if rule[1].startswith("ads.rate_limit") else 500 if rule[1] == "error_server" else 200
                    response = _error(rule[1], f"injected failure for campaign {cid}", status)
                    response.rate_limited = status == 429
                    return response
        return ids

    def get_product_level_campaign_id_list(self, request, shop_id):
        ad_type = request.arg("ad_type", "") or "all"
        offset, limit = int(request.arg("offset", "0")), int(request.arg("limit", "5000"))
        with self.lock:
            ids = list(self.shops[shop_id])
        if ad_type in ("auto", "manual"):
            ids = [c for c in ids if self._is_manual(c) == (ad_type == "manual")]
        page = [{"ad_type": "manual" if self._is_manual(c) else "auto", "campaign_id": c}
                for c in ids[offset:offset + limit]]
        return _ok({"shop_id": shop_id, "region": "VN", "has_next_page": offset + limit < len(ids),
                    "campaign_list": page}, terse=bool(offset % 2))

    def get_product_level_campaign_setting_info(self, request, shop_id):
        ids = self._ids(request, shop_id)
        if isinstance(ids, SandboxResponse):
            return ids
        types = {int(t) for t in (request.arg("info_type_list") or "").split(",") if t.strip().isdigit()}
        if not types:
            return _error("error_param", "info_type_list is required.")
        keep = {"campaign_id"} | {name for t, name in ((1, "common_info"), (2, "manual_bidding_info"),
                                                       (3, "auto_bidding_info"), (4, "auto_product_ads_info"))
                                  if t in types}
        rows = [{k: v for k, v in self.campaign(c).items() if k in keep} for c in ids]
        return _ok({"shop_id": shop_id, "region": "VN", "campaign_list": rows}, terse=ids[0] % 2 == 0)

    def _date_range(self, request) -> tuple[date, date] | SandboxResponse:
        start, end = _parse_date(request.arg("start_date")), _parse_date(request.arg("end_date"))
        today = datetime.now(VN).date()
        if start is None or end is None:
            return _error("error_param", "start_date and end_date must be DD-MM-YYYY.")
        if end > today or start > today:
            return _error("ads.performance.error_date_in_future", "Date cannot be in the future.")
        if start < today - timedelta(days=183):
            return _error("ads.performance.error_date_too_old", "Date cannot be older than 6 months.")
        if start > end:
            return _error("ads.performance.error_start_later_than_end", "start_date is later than end_date.")
        if start == end:
            return _error("ads.performance.error_same_start_end_dates", "start_date equals end_date.")
        if (end - start).days + 1 > 30:
            return _error("ads.performance.error_date_range_too_long", "Date range exceeds one month.")
        return start, end

    def get_product_campaign_daily_performance(self, request, shop_id):
        dates = self._date_range(request)
        if isinstance(dates, SandboxResponse):
            return dates
        ids = self._ids(request, shop_id)
        if isinstance(ids, SandboxResponse):
            return ids
        days = [dates[0] + timedelta(days=d) for d in range((dates[1] - dates[0]).days + 1)]
        campaigns = []
        for cid in ids:
            common = self.campaign(cid)["common_info"]
            campaigns.append({"campaign_id": cid, "ad_type": common["ad_type"],
                              "campaign_placement": common["campaign_placement"], "ad_name": common["ad_name"],
                              "metrics_list": [self.metrics(cid, d) for d in days]})
        block = {"shop_id": shop_id, "region": "VN", "campaign_list": campaigns}
        # Both shapes of the wild: the documented array wrapper, and the bare object one live client reads.
        return _ok([block] if ids[0] % 2 else block)

    def get_all_cpc_ads_daily_performance(self, request, shop_id):
        dates = self._date_range(request)
        if isinstance(dates, SandboxResponse):
            return dates
        days = [dates[0] + timedelta(days=d) for d in range((dates[1] - dates[0]).days + 1)]
        return _ok([self.shop_metrics(shop_id, d) for d in days])

    def get_total_balance(self, request, shop_id):
        return _ok({"data_timestamp": int(time.time()), "total_balance": 1_000_000.0})

    def _edit(self, request, shop_id, allowed: set[str]):
        body = request.json() or {}
        reference, cid, action = body.get("reference_id"), body.get("campaign_id"), body.get("edit_action")
        if not reference or not cid or not action:
            return _error("error_param", "reference_id, campaign_id and edit_action are required.")
        if action not in allowed:
            return _error("ads.edit.invalid_action", f"edit_action {action} is not valid.")
        if self.campaign_shop.get(cid) != shop_id:
            return _error("ads.shop.campaign_not_match", "Campaign does not belong to this shop.")
        with self.lock:
            if reference in self.references:
                return _error("error_param", "reference_id has been used.")
            self.references.add(reference)
            if action == "change_budget":
                budget = body.get("budget")
                if not isinstance(budget, int | float) or budget < 0:
                    return _error("ads.campaign.error_daily_budget_range", "Budget is invalid.")
                self.budgets[cid] = float(budget)
            self.edits.append({"campaign_id": cid, "edit_action": action, "budget": body.get("budget"),
                               "reference_id": reference, "at": time.time()})
        return _ok([{"campaign_id": cid}])

    def edit_manual_product_ads(self, request, shop_id):
        return self._edit(request, shop_id, {"start", "pause", "resume", "stop", "delete", "change_budget",
                                             "change_duration", "change_smart_creative", "change_location",
                                             "change_enhanced_cpc", "change_roas_target"})

    def edit_auto_product_ads(self, request, shop_id):
        return self._edit(request, shop_id, {"start", "pause", "resume", "stop", "change_budget",
                                             "change_duration"})

    # --- control API ----------------------------------------------------------------------------------
    def _shop(self, payload: dict) -> int:
        shop_id = int(payload.get("shop_id") or 0)
        if shop_id not in self.shops:
            raise ValueError(f"no sandbox shop {shop_id}; shops: {sorted(self.shops)}")
        return shop_id

    def control(self, action: str, payload: dict) -> Any:
        if action == "campaigns":
            shop_id = self._shop(payload)
            with self.lock:
                ids = list(self.shops[shop_id])
            return {"shop_id": shop_id, "count": len(ids), "campaign_ids": ids,
                    "budgets": {str(c): self.campaign(c)["common_info"]["campaign_budget"] for c in ids}}
        if action == "authorize":
            shop_id = self._shop(payload)
            code = secrets.token_hex(16)
            with self.lock:
                self.codes[code] = shop_id
            return {"code": code, "shop_id": shop_id}
        if action == "issue_tokens":
            return {"shop_id": self._shop(payload), **self._issue(self._shop(payload))}
        if action == "expire_tokens":
            shop_id = self._shop(payload)
            with self.lock:
                for token, (owner, _expires) in list(self.access_tokens.items()):
                    if owner == shop_id:
                        self.access_tokens[token] = (owner, time.time() - 1)
            return {"expired": shop_id}
        if action == "token_lifetime":
            self.token_lifetime = int(payload["seconds"])
            return {"seconds": self.token_lifetime}
        if action in ("fail_chunk", "fail_campaigns"):
            if action == "fail_chunk":
                shop_id = self._shop(payload)
                size, index = int(payload.get("chunk_size", 100)), int(payload["chunk_index"])
                ids = self.shops[shop_id][index * size:(index + 1) * size]
            else:
                ids = [int(c) for c in payload["campaign_ids"]]
            rule_ids = ids[:1]  # one id per chunk is enough: any call naming it fails
            with self.lock:
                for cid in rule_ids:
                    self.failures[cid] = [int(payload.get("times", -1)), payload.get("error", "error_server")]
            return {"failing": rule_ids}
        if action == "clear_failures":
            with self.lock:
                self.failures.clear()
            return {"cleared": True}
        if action == "add_campaigns":
            shop_id = self._shop(payload)
            with self.lock:
                new = []
                for _ in range(int(payload.get("count", 1))):
                    cid = self.next_campaign[shop_id]
                    self.next_campaign[shop_id] += 7
                    new.append(cid)
                    self.campaign_shop[cid] = shop_id
                # New campaigns come first, as a newest-first list would show them: offsets shift.
                self.shops[shop_id][:0] = new
            return {"added": new}
        if action == "remove_campaigns":
            shop_id = self._shop(payload)
            with self.lock:
                removed = self.shops[shop_id][:int(payload.get("count", 1))]
                del self.shops[shop_id][:len(removed)]
            return {"removed": removed}
        if action == "stats":
            with self.lock:
                return {"calls": dict(self.calls), "refreshes": {str(k): v for k, v in self.refreshes.items()},
                        "edits": list(self.edits)}
        raise KeyError(action)

    def status(self) -> dict:
        with self.lock:
            shops = {str(s): len(ids) for s, ids in self.shops.items()}
        return {**super().status(), "shops": shops, "partner_id": SANDBOX_PARTNER_ID}
