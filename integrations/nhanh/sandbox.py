"""A local Nhanh.vn Open API v3.0 over generated customers and products, served by
``integrations.sandbox.server`` under ``/nhanh``: ``POST /nhanh/v3.0/customer/list``,
``POST /nhanh/v3.0/app/checkaccesstoken``, ``POST /nhanh/v3.0/product/list`` and ``/product/inventory`` (the
catalog: ``sandbox_catalog.NhanhCatalog``; its truth at ``GET /_sandbox/nhanh/products``, a sale through
``POST /_sandbox/nhanh/set_available`` {product_id, depot_id, available}).

Customer ``i`` (``0 <= i < population.n_nhanh``) is person ``i`` of the shared population, with id
``FIRST_ID + ID_STEP * i``. Rows are computed on demand; only the changes made through the control API
(``touch``, ``set_total``) are stored, so 200,000 customers cost no more memory than 200.

Where the docs leave a behaviour open, the choice made here is marked "unconfirmed". Where the docs allow
several shapes, the sandbox produces them all (``NhanhFaults``, changed at run time through
``POST /_sandbox/nhanh/faults``): ``paginator.next`` as an object or an array, switching between pages, and
its end as null, absent, ``[]``, ``{}`` or ``""``; rows with unknown extra fields, optional fields left out
and numbers sent as strings.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any

from integrations.sandbox.catalog_population import CatalogPopulation
from integrations.sandbox.population import FastRandom

from ..sandbox.base import Faults, SandboxApp, SandboxRequest, SandboxResponse
from ..sandbox.population import CITIES, JUNK_PHONES, render_phone
from .sandbox_catalog import CatalogFormError, NhanhCatalog

SANDBOX_APP_ID = "sandbox-app"
SANDBOX_BUSINESS_ID = "12345"
# The webhook verify token of the sandbox's app (the demo stores it on the Nhanh connection); public by design.
SANDBOX_WEBHOOK_VERIFY_TOKEN = "SandboxWebhookVerifyToken0123"  # noqa: S105
# The sandbox's fixed, public credentials (never valid anywhere else).
SANDBOX_ACCESS_TOKEN = "sandbox-nhanh-token-0123456789abcdef"  # noqa: S105
SANDBOX_SECRET_KEY = "sandbox-nhanh-secret-key"  # noqa: S105

FIRST_ID = 100_000
PAGE_CACHE_PAGES = 2500  # ~32 KB each: the pages of 250,000 customers
ID_STEP = 3  # ids are not contiguous, as in a real shop where customers get deleted or merged
MAX_PAGE_SIZE = 100  # observed: a bigger size is silently capped, no error
DEFAULT_PAGE_SIZE = 50  # unconfirmed: the default when paginator.size is omitted is not documented
MAX_FILTER_IDS = 100
VIETNAM = timezone(timedelta(hours=7))  # Nhanh's dates (lastBoughtDate, birthday) are local dates
RATE_LIMIT_MESSAGE = "Your app exceeded the API Rate Limit"
MALFORMED_UPDATED_AT = "2024-13-45"
# Nhanh's permission names are not documented; these only look the part.
PERMISSIONS = ["customer.view", "customer.edit", "product.view", "order.view"]

# paginator.next is documented as "array or object" and may change shape; an empty value ends the list.
CURSOR_SHAPES = ("object", "array", "mixed")
CURSOR_ENDS = ("null", "absent", "empty_array", "empty_object", "empty_string", "mixed")
END_VALUES = {"null": None, "empty_array": [], "empty_object": {}, "empty_string": ""}
# Fields of the documented v3 record a row may lack (id, type, name, mobile and updatedAt are always sent).
OPTIONAL_FIELDS = ("email", "address", "points", "totalAmount", "birthday", "gender", "locations", "group")
NUMBER_FIELDS = ("id", "type", "points", "totalAmount", "gender", "updatedAt")
# Documented fields this sandbox does not otherwise send, and fields no document mentions.
EXTRA_FIELDS = {
    "code": "KH0001", "saleName": "", "taxCode": "", "startedDate": "2023-05-01",
    "level": {"id": 2, "name": "Bạc"}, "business": {"name": "", "address": ""},
    "location": {"cityId": 254, "wardId": 1108}, "frequencyBought": 3,
    "xUndocumented": {"nested": [1, "two", None]},
}
# Kept for the lastBoughtDateFrom/To filters (documented) but not served: not in the documented v3 record.
INTERNAL_FIELDS = ("lastBoughtDate",)

NOT_FOUND_HTML = ("<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
                  "<p>The requested URL was not found on this server.</p></body></html>")


class FormError(Exception):
    """The request's fields are invalid: answered as ERR_INVALID_FORM_FIELDS with ``messages``."""

    def __init__(self, messages: dict[str, str]):
        super().__init__(messages)
        self.messages = messages


def _failure(error_code: str, messages: Any, data: Any = None) -> SandboxResponse:
    # HTTP 200 with code 0: Nhanh describes errors only inside the body (the HTTP status is unconfirmed).
    body: dict[str, Any] = {"code": 0, "errorCode": error_code, "messages": messages}
    if data is not None:
        body["data"] = data
    return SandboxResponse(200, body)


def _not_found() -> SandboxResponse:
    return SandboxResponse(404, NOT_FOUND_HTML, content_type="text/html; charset=utf-8")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _unit(n: int, salt: int) -> float:
    """A deterministic number in [0, 1) for ``n`` (splitmix64): row variations are the same on every read,
    so pages stay cacheable and a resumed pull sees what the first one saw."""
    x = (n * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) / 2**64


@dataclass
class NhanhFaults(Faults):
    """Nhanh's documented variations on top of the common faults."""

    cursor_shape: str = "object"  # object | array | mixed (the shape changes from page to page)
    cursor_end: str = "null"  # null | absent | empty_array | empty_object | empty_string | mixed
    extra_fields_rate: float = 0.0  # share of rows with extra fields (documented elsewhere or not at all)
    omit_optional_rate: float = 0.0  # share of rows lacking some optional fields
    numbers_as_strings_rate: float = 0.0  # share of rows with every number sent as a string

    def check(self) -> None:
        super().check()  # types and ranges, the rates included
        if self.cursor_shape not in CURSOR_SHAPES:
            raise ValueError(f"cursor_shape must be one of {', '.join(CURSOR_SHAPES)}")
        if self.cursor_end not in CURSOR_ENDS:
            raise ValueError(f"cursor_end must be one of {', '.join(CURSOR_ENDS)}")

    def row_variations(self) -> tuple:
        return (self.cursor_shape, self.cursor_end, self.extra_fields_rate, self.omit_optional_rate,
                self.numbers_as_strings_rate)


def catalog_for(options, population) -> CatalogPopulation:
    """The product catalog the Nhanh and Shopify sandboxes share (built once per population)."""
    catalog = getattr(population, "catalog", None)
    if catalog is None:
        catalog = CatalogPopulation(seed=options.seed, products=getattr(options, "products", 300),
                                    anchor=getattr(population, "anchor", None))
        if population is not None:
            population.catalog = catalog
    return catalog


def _customer_id(index: int) -> int:
    return FIRST_ID + ID_STEP * index


def _index_of(customer_id: int, n: int) -> int | None:
    offset = customer_id - FIRST_ID
    if offset < 0 or offset % ID_STEP:
        return None
    index = offset // ID_STEP
    return index if index < n else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_ymd(value: Any) -> bool:
    try:
        return isinstance(value, str) and len(value) == 10 and bool(date.fromisoformat(value))
    except ValueError:
        return False


@dataclass(frozen=True)
class CustomerQuery:
    """The ``filters`` of a customer/list request, validated."""

    type: int | None = None
    mobile: str | None = None
    ids: tuple[int, ...] | None = None
    last_bought_from: str | None = None
    last_bought_to: str | None = None
    updated_from: int | None = None
    updated_to: int | None = None

    @classmethod
    def parse(cls, filters: dict) -> CustomerQuery:
        """Unknown filters are ignored (unconfirmed; most APIs of this kind do so)."""
        problems: dict[str, str] = {}
        customer_type = filters.get("type")
        if customer_type is not None and customer_type not in (1, 2, 3):
            problems["type"] = "type must be 1, 2 or 3"
        ids = filters.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(_is_int(i) for i in ids)):
            problems["ids"] = "ids must be a list of integers"
        elif ids is not None and len(ids) > MAX_FILTER_IDS:
            problems["ids"] = f"ids accepts at most {MAX_FILTER_IDS} ids"
        mobile = filters.get("mobile")
        if mobile is not None and not isinstance(mobile, str):
            problems["mobile"] = "mobile must be a string"
        for name in ("lastBoughtDateFrom", "lastBoughtDateTo"):
            if filters.get(name) is not None and not _is_ymd(filters[name]):
                problems[name] = f"{name} must be a date Y-m-d"
        for name in ("updatedAtFrom", "updatedAtTo"):
            if filters.get(name) is not None and not _is_int(filters[name]):
                problems[name] = f"{name} must be a unix timestamp in seconds"
        if problems:
            raise FormError({f"filters.{name}": text for name, text in problems.items()})
        return cls(
            type=customer_type, mobile=mobile, ids=tuple(ids) if ids is not None else None,
            last_bought_from=filters.get("lastBoughtDateFrom"), last_bought_to=filters.get("lastBoughtDateTo"),
            updated_from=filters.get("updatedAtFrom"), updated_to=filters.get("updatedAtTo"),
        )

    def updated_in_range(self, updated_at: int) -> bool:
        """Checked before a row is built: the incremental-sync filter is the common, selective one."""
        return ((self.updated_from is None or updated_at >= self.updated_from)
                and (self.updated_to is None or updated_at <= self.updated_to))

    def matches(self, row: dict) -> bool:
        """Ranges include both ends (unconfirmed). ``mobile`` compares digits only (unconfirmed: how
        Nhanh matches a differently written number is not documented)."""
        if self.type is not None and row["type"] != self.type:
            return False
        if self.mobile is not None and _digits(row["mobile"]) != _digits(self.mobile):
            return False
        if self.last_bought_from or self.last_bought_to:
            bought = row["lastBoughtDate"]
            if not bought:
                return False
            if (self.last_bought_from and bought < self.last_bought_from) or (
                    self.last_bought_to and bought > self.last_bought_to):
                return False
        return self.updated_in_range(row["updatedAt"])


@dataclass
class RateLock:
    """Nhanh locks a URL once its limit is exceeded; every call made while locked pushes the end out."""

    until: float  # unix seconds
    seconds: float  # how far each call made while locked pushes ``until`` from now

    def answer(self, now: float) -> SandboxResponse:
        data = {"lockedSeconds": math.ceil(self.until - now), "unlockedAt": math.ceil(self.until)}
        # HTTP 200 (unconfirmed, like every error) and the singular "message" of the documented example.
        return SandboxResponse(200, {"code": 0, "errorCode": "ERR_429", "message": RATE_LIMIT_MESSAGE,
                                     "data": data}, rate_limited=True)


class NhanhSandbox(SandboxApp):
    name = "nhanh"
    request_limit = (150, 30)
    faults_class = NhanhFaults
    faults: NhanhFaults

    def __init__(self, options, population=None):
        super().__init__(options, population)
        self.routes = {
            "/v3.0/customer/list": self.customer_list,
            "/v3.0/app/checkaccesstoken": self.check_access_token,
            "/v3.0/product/list": self.product_list,
            "/v3.0/product/inventory": self.product_inventory,
        }
        self.catalog = NhanhCatalog(catalog_for(options, population))
        self.overrides: dict[int, dict[str, Any]] = {}  # customer index → changed fields (control API)
        self.page_cache: OrderedDict[str, bytes] = OrderedDict()  # encoded pages, emptied by any change
        self.locks: dict[str, RateLock] = {}  # rate-limit key → lock
        self.state_lock = threading.Lock()
        self.sort_requests = 0  # requests that sent paginator.sort, not a documented customer/list parameter

    def default_faults(self) -> NhanhFaults:
        faults = super().default_faults()
        faults.cursor_shape = self.options.nhanh_cursor
        faults.check()
        return faults

    # --- requests -----------------------------------------------------------------------------------
    def rate_limit_key(self, request: SandboxRequest) -> str | None:
        if request.path not in self.routes:
            return None
        return f"{request.arg('appId')}:{request.arg('businessId')}:{request.path}"

    def rate_limited_response(self, request: SandboxRequest, retry_after: float) -> SandboxResponse:
        key = self.rate_limit_key(request) or request.path
        now = time.time()
        with self.state_lock:
            lock = self.locks.get(key)
            if lock is not None and lock.until > now:
                lock.until = now + lock.seconds
            else:
                seconds = max(retry_after, 1.0)
                lock = self.locks[key] = RateLock(until=now + seconds, seconds=seconds)
            return lock.answer(now)

    def server_error_response(self, request: SandboxRequest, status: int) -> SandboxResponse:
        # What the front proxy of a PHP API answers when the backend is down: an HTML page, not JSON.
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        page = (f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1>"
                "</center><hr><center>nginx</center></body></html>")
        return SandboxResponse(status, page, content_type="text/html")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        route = self.routes.get(request.path)
        if route is None or request.method != "POST":  # unconfirmed for other methods: same HTML 404
            return _not_found()
        if self.faults.rate_limit_enabled and self._is_locked(request):
            # The server's window limiter let this call through, but the URL is still locked.
            return self.rate_limited_response(request, 0)
        refusal = self._check_credentials(request)
        if refusal is not None:
            return refusal
        try:
            body = request.json()
        except ValueError:
            return _failure("ERR_INVALID_DATA", "invalid data: the body is not valid JSON")
        if not isinstance(body, dict):
            return _failure("ERR_INVALID_DATA", "invalid data: the body must be a JSON object")
        try:
            return route(body)
        except (FormError, CatalogFormError) as exc:
            return _failure("ERR_INVALID_FORM_FIELDS", exc.messages)

    def _is_locked(self, request: SandboxRequest) -> bool:
        lock = self.locks.get(self.rate_limit_key(request) or "")
        return lock is not None and lock.until > time.time()

    def _check_credentials(self, request: SandboxRequest) -> SandboxResponse | None:
        if request.arg("appId") != SANDBOX_APP_ID:
            return _failure("ERR_INVALID_APP_ID", "appId is invalid")
        if request.arg("businessId") != SANDBOX_BUSINESS_ID:
            return _failure("ERR_INVALID_BUSINESS_ID", "businessId is invalid")
        # The raw token only: whether "Bearer <token>" is tolerated is unconfirmed, and refusing it here
        # catches a client that sends it before production does.
        if self.faults.auth_reject or request.header("Authorization") != SANDBOX_ACCESS_TOKEN:
            return _failure("ERR_INVALID_ACCESS_TOKEN", "accessToken is invalid or expired")
        return None

    def check_access_token(self, body: dict) -> SandboxResponse:
        if body.get("secretKey") != SANDBOX_SECRET_KEY:
            # The code for a wrong secretKey is not documented (unconfirmed): a field error is the likeliest.
            raise FormError({"secretKey": "secretKey is invalid"})
        expired_at = int((self.population.anchor + timedelta(days=365)).timestamp())
        return SandboxResponse(200, {"code": 1, "data": {
            "accessToken": SANDBOX_ACCESS_TOKEN, "version": "3.0", "expiredAt": expired_at,
            "businessId": int(SANDBOX_BUSINESS_ID), "depotIds": [], "pageIds": [], "permissions": PERMISSIONS,
        }})

    def customer_list(self, body: dict) -> SandboxResponse:
        filters, paginator = body.get("filters") or {}, body.get("paginator") or {}
        if not isinstance(filters, dict) or not isinstance(paginator, dict):
            raise FormError({"filters": "filters and paginator must be objects"})
        query = CustomerQuery.parse(filters)
        if "sort" in paginator:
            # Not a documented parameter of customer/list: ignored (the order stays this sandbox's own),
            # and counted so tests can show the client does not rely on it.
            with self.state_lock:
                self.sort_requests += 1
        size, after_id = self._parse_paginator(paginator)
        # Re-reading unchanged data is what an incremental or repeated pull mostly does; a real server
        # answers it from its caches, so rebuilding the same rows would make the sandbox, not the puller,
        # the bottleneck. Any change through the control API empties the cache; faults bypass it.
        key = json.dumps([filters, size, after_id, self.faults.row_variations()], sort_keys=True, default=str)
        cacheable = self.faults.malformed_rate == 0
        if cacheable:
            with self.state_lock:
                cached = self.page_cache.get(key)
                if cached is not None:
                    self.page_cache.move_to_end(key)
                    return SandboxResponse(200, cached)
        response = self._customer_page(query, size, after_id)
        if cacheable:
            with self.state_lock:
                self.page_cache[key] = response.encoded()
                while len(self.page_cache) > PAGE_CACHE_PAGES:
                    self.page_cache.popitem(last=False)
        return response

    # --- products (sandbox_catalog) ----------------------------------------------------------------------
    def product_list(self, body: dict) -> SandboxResponse:
        return self._product_page(body, inventory=False)

    def product_inventory(self, body: dict) -> SandboxResponse:
        return self._product_page(body, inventory=True)

    def _product_page(self, body: dict, *, inventory: bool) -> SandboxResponse:
        filters, paginator = body.get("filters") or {}, body.get("paginator") or {}
        if not isinstance(filters, dict) or not isinstance(paginator, dict):
            raise FormError({"filters": "filters and paginator must be objects"})
        size, after_id = self._parse_paginator(paginator)
        sort = paginator.get("sort") or {}
        direction = sort.get("productId" if inventory else "id", "asc") if isinstance(sort, dict) else "asc"
        if direction not in ("asc", "desc"):
            raise FormError({"paginator.sort": "sort must be asc or desc"})
        rows, more = self.catalog.page(filters, size, after_id, descending=direction == "desc",
                                       inventory=inventory)
        id_key = "productId" if inventory else "id"
        page_info = {"next": self._cursor(rows[-1][id_key])} if more else self._end(after_id)
        data = [self._corrupt_product(row, id_key) if self.roll_malformed() else self._vary_product(row, id_key)
                for row in rows]
        return SandboxResponse(200, {"code": 1, "data": data, "paginator": page_info})

    def _vary_product(self, row: dict, id_key: str) -> dict:
        """The documented variations on a product row: numbers sent as strings (ids, status, timestamps and every
        quantity), undocumented extra fields."""
        f, rid = self.faults, row[id_key]
        if f.numbers_as_strings_rate and _unit(rid, 5) < f.numbers_as_strings_rate:
            row = {**row, **{k: str(row[k]) for k in ("id", "productId", "parentId", "status", "updatedAt")
                             if _is_int(row.get(k))}}
            inventory = row["inventory"]
            row["inventory"] = {**inventory, "depots": [{k: (str(v) if isinstance(v, float) else v)
                                                         for k, v in depot.items()}
                                                        for depot in inventory["depots"]]}
        if f.extra_fields_rate and _unit(rid, 4) < f.extra_fields_rate:
            row = {**row, "xUndocumented": {"nested": [1, "two", None]}, "tagIds": [3, 5], "combos": []}
        return row

    @staticmethod
    def _corrupt_product(row: dict, id_key: str) -> dict:
        """One of the corruptions seen in the wild, always the same one for a given row."""
        bad = dict(row)
        way = row[id_key] % 3
        if way == 0:
            del bad[id_key]
        elif way == 1 and "updatedAt" in bad:
            bad["updatedAt"] = MALFORMED_UPDATED_AT
        else:
            bad["inventory"] = {**bad["inventory"], "depots": [{"id": "kho?", "available": "n/a"}]}
        return bad

    def _customer_page(self, query, size: int, after_id: int | None) -> SandboxResponse:
        candidates = self._candidates(query, after_id)
        rows: list[dict] = []
        scanned = 0
        for index in candidates:
            scanned += 1
            if not query.updated_in_range(self._updated_at(index)):
                continue
            row = self._record(index)
            if query.matches(row):
                rows.append(row)
                if len(rows) == size:
                    break
        # A full page gets a cursor unless nothing is left to scan, so the last page may come back empty
        # with next null; the docs allow that ("a short page with a next still means more data").
        more = len(rows) == size and scanned < len(candidates)
        data = [self._corrupt(row) if self.roll_malformed() else self._vary(row) for row in rows]
        page_info = {"next": self._cursor(rows[-1]["id"])} if more else self._end(after_id)
        return SandboxResponse(200, {"code": 1, "data": data, "paginator": page_info})

    def _cursor(self, last_id: int) -> dict | list:
        shape = self.faults.cursor_shape
        if shape == "mixed":
            shape = "array" if _unit(last_id, 1) < 0.5 else "object"
        return [last_id] if shape == "array" else {"id": last_id}

    def _end(self, after_id: int | None) -> dict:
        """The paginator of the last page: ``next`` empty in one of the forms the docs allow, or absent."""
        end = self.faults.cursor_end
        if end == "mixed":
            end = CURSOR_ENDS[int(_unit(after_id or 0, 2) * (len(CURSOR_ENDS) - 1))]
        return {} if end == "absent" else {"next": END_VALUES[end]}

    def _vary(self, row: dict) -> dict:
        """The row as served: without internal fields, then the configured documented variations."""
        f = self.faults
        served = {key: value for key, value in row.items() if key not in INTERNAL_FIELDS}
        rid = row["id"]
        if f.omit_optional_rate and _unit(rid, 3) < f.omit_optional_rate:
            # A different subset for different rows, always at least one field.
            for i, name in enumerate(OPTIONAL_FIELDS):
                if i == rid % len(OPTIONAL_FIELDS) or _unit(rid, 10 + i) < 0.5:
                    served.pop(name, None)
        if f.extra_fields_rate and _unit(rid, 4) < f.extra_fields_rate:
            served.update(EXTRA_FIELDS)
        if f.numbers_as_strings_rate and _unit(rid, 5) < f.numbers_as_strings_rate:
            for name in NUMBER_FIELDS:
                if _is_int(served.get(name)):
                    served[name] = str(served[name])
            if isinstance(served.get("locations"), dict):
                served["locations"] = {k: str(v) for k, v in served["locations"].items()}
        return served

    @staticmethod
    def _parse_paginator(paginator: dict) -> tuple[int, int | None]:
        size = paginator.get("size", DEFAULT_PAGE_SIZE)
        if not _is_int(size) or size < 1:
            raise FormError({"paginator.size": "size must be a positive integer"})
        cursor = paginator.get("next")
        # The shapes this sandbox hands out: {"id": N} or [N]. None (or no next) starts at the beginning.
        if isinstance(cursor, dict) and set(cursor) == {"id"} and _is_int(cursor["id"]):
            after_id = cursor["id"]
        elif isinstance(cursor, list) and len(cursor) == 1 and _is_int(cursor[0]):
            after_id = cursor[0]
        elif cursor is None:
            after_id = None
        else:
            raise FormError({"paginator.next": "next must be the value returned by the previous page"})
        return min(size, MAX_PAGE_SIZE), after_id

    def _candidates(self, query: CustomerQuery, after_id: int | None) -> Sequence[int]:
        """Indexes to scan in this sandbox's own stable order (ids ascending) after the cursor: a range
        (never a list of every customer), or the few indexes named by an ``ids`` filter."""
        n = self.population.n_nhanh
        if query.ids is not None:
            named = {_index_of(cid, n) for cid in query.ids} - {None}
            return sorted(i for i in named if after_id is None or _customer_id(i) > after_id)
        start = 0 if after_id is None else max((after_id - FIRST_ID) // ID_STEP + 1, 0)
        return range(start, n)

    # --- customers ----------------------------------------------------------------------------------
    def _row_rng(self, index: int) -> random.Random:
        # An integer seed: seeding from a string hashes it with SHA-512, several times slower.
        return FastRandom((self.population.seed << 32) | index)

    def _updated_at(self, index: int) -> int:
        changed = self.overrides.get(index, {}).get("updatedAt")
        if changed is not None:
            return changed
        return int(self.population.updated_at("nhanh", index).timestamp())

    def customer(self, index: int) -> dict:
        """Customer ``index`` as served (the documented v3 record), with any change made through the
        control API, before the configured variations."""
        row = self._record(index)
        for name in INTERNAL_FIELDS:
            row.pop(name, None)
        return row

    def _record(self, index: int) -> dict:
        """Customer ``index`` with the internal fields the filters use."""
        population = self.population
        person = population.person(index)
        rng = self._row_rng(index)
        type_roll = rng.random()
        customer_type = 1 if type_roll < 0.85 else 2 if type_roll < 0.95 else 3
        has_email, has_birthday, has_gender = rng.random() < 0.7, rng.random() < 0.8, rng.random() < 0.85
        days_before_update = rng.uniform(0, 400)
        district_id, ward_id = rng.randint(300, 999), rng.randint(1000, 9999)
        # A duplicate registration carries the phone of the person it duplicates, under this person's name.
        local_phone, _ = population.nhanh_phones(index)
        mobile = render_phone(local_phone, rng) if local_phone else rng.choice(JUNK_PHONES)
        updated_at = population.updated_at("nhanh", index)
        total = person.total_spent
        # lastBoughtDate is not in the v3 doc's record: kept internally (INTERNAL_FIELDS) for the documented
        # lastBoughtDate filters, never served. A date before updatedAt; empty for people who never bought.
        bought_on = (updated_at - timedelta(days=days_before_update)).astimezone(VIETNAM)
        row = {
            "id": _customer_id(index),
            "type": customer_type,
            "name": person.name,
            "mobile": mobile,
            "email": f"{person.email_user}@gmail.com" if has_email else "",
            "address": f"{person.house} {person.street}",
            "points": total // 100_000,
            "totalAmount": total,
            "birthday": person.birthday if has_birthday else "",
            "gender": person.gender if has_gender else None,
            "locations": {"cityId": 250 + CITIES.index(person.city), "districtId": district_id, "wardId": ward_id},
            "group": {"id": 1, "name": "VIP"} if total >= 20_000_000 else None,
            "updatedAt": int(updated_at.timestamp()),
            "lastBoughtDate": bought_on.strftime("%Y-%m-%d") if total else "",
        }
        row.update(self.overrides.get(index, {}))
        return row

    @staticmethod
    def _corrupt(row: dict) -> dict:
        """One of the corruptions seen in the wild, always the same one for a given row."""
        bad = {key: value for key, value in row.items() if key not in INTERNAL_FIELDS}
        way = (row["id"] - FIRST_ID) // ID_STEP % 4
        if way == 0:
            del bad["id"]
        elif way == 1:
            bad["updatedAt"] = MALFORMED_UPDATED_AT
        elif way == 2:
            bad["type"] = "abc"
        else:
            bad["totalAmount"] = "n/a"
        return bad

    # --- control API --------------------------------------------------------------------------------
    def business_id(self) -> str:
        return SANDBOX_BUSINESS_ID

    def control(self, action: str, payload: dict) -> Any:
        if action == "webhooks":  # send Nhanh webhooks to a URL (sandbox_webhooks)
            from .sandbox_webhooks import send

            return send(self, payload)
        if action == "touch":
            # A purchase: updatedAt moves to now and, with a new total, lastBoughtDate to today.
            indexes = [self._index_or_error(cid) for cid in payload.get("ids", [])]
            change: dict[str, Any] = {"updatedAt": int(time.time())}
            if payload.get("totalAmount") is not None:
                change["totalAmount"] = int(payload["totalAmount"])
                change["lastBoughtDate"] = datetime.now(VIETNAM).strftime("%Y-%m-%d")
            with self.state_lock:
                for index in indexes:
                    self.overrides.setdefault(index, {}).update(change)
                self.page_cache.clear()
            return {"touched": len(indexes), "updatedAt": change["updatedAt"]}
        if action == "set_total":
            # Changes the total without bumping updatedAt: a change an incremental pull cannot see.
            index = self._index_or_error(payload.get("id"))
            with self.state_lock:
                self.overrides.setdefault(index, {})["totalAmount"] = int(payload["totalAmount"])
                self.page_cache.clear()
            return {"id": payload["id"], "totalAmount": int(payload["totalAmount"])}
        if action == "expected":
            try:
                query = CustomerQuery.parse(payload.get("filters") or {})
            except FormError as exc:
                raise ValueError(f"invalid filters: {exc.messages}") from exc
            return [_customer_id(index) for index in self._candidates(query, None)
                    if query.updated_in_range(self._updated_at(index)) and query.matches(self._record(index))]
        if action == "stats":
            return {"customers": self.population.n_nhanh, "changed": len(self.overrides),
                    "products": len(self.catalog.items), "stock_changes": self.catalog.stock_changes}
        if action == "products":  # GET /_sandbox/nhanh/products: [{"code", "depots": {depot_id: available}}]
            return SandboxResponse(200, self.catalog.products_truth())
        if action == "set_available":  # {product_id, depot_id, available}: a sale in the store
            try:
                return self.catalog.set_available(int(payload["product_id"]), int(payload["depot_id"]),
                                                  payload["available"])
            except KeyError as exc:  # an unknown product or depot, not an unknown action
                raise ValueError(str(exc)) from None
        raise KeyError(action)

    def _index_or_error(self, customer_id: Any) -> int:
        index = _index_of(customer_id, self.population.n_nhanh) if _is_int(customer_id) else None
        if index is None:
            raise ValueError(f"no Nhanh customer with id {customer_id!r}")
        return index

    def status(self) -> dict:
        now = time.time()
        with self.state_lock:
            locked = sorted(key for key, lock in self.locks.items() if lock.until > now)
        return {**super().status(), "customers": self.population.n_nhanh, "locked": locked,
                "sort_requests": self.sort_requests}

