"""Shopify Admin GraphQL client: one endpoint, the access-token header, and pacing by calculated query cost.

Shopify limits an (app, shop) pair with a leaky bucket of cost points and reports the bucket after every
call (``extensions.cost.throttleStatus``). The client remembers that report and, before the next call,
waits just long enough for the bucket to hold the query's expected cost, so a long pull runs at the
restore rate instead of bouncing off THROTTLED. When it is throttled anyway (another client of the same
app), it waits exactly the deficit the server reported, through the base class's bounded retries. Built
from a connection, the estimate is shared by every process calling the shop (``budget``).

Also here: expiring tokens by the client-credentials grant (``tokens``), bulk query operations (started,
polled, cancelled here; downloaded and ingested by ``bulk.ShopifyBulkSource``), ``customersCount``, a
``customerCreate`` that is not repeated blindly after a failure that may have committed it, and
``test_connection``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from integrations.errors import (
    AuthRejected,
    BadPayload,
    RateLimited,
    RequestRejected,
    UpstreamError,
    UpstreamUnavailable,
)
from integrations.http import BaseClient
from integrations.secrets import mask_secret

from .tokens import ClientCredentials, MemoryTokenStore, TokenStore

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-10"
MAX_PAGE_SIZE = 250
MAX_METAFIELDS_PER_CALL = 25
MAX_QUERY_COST = 1000
UNKNOWN_QUERY_COST = 250.0  # reserved from a shared budget for a query whose cost is not known yet

# Customer fields as named in 2026-10 (defaultEmailAddress/defaultPhoneNumber replace the deprecated
# email/phone). Each nested object costs a point per customer, so this set costs ~7 points a row.
CUSTOMER_BASE_FIELDS = """
    id legacyResourceId firstName lastName displayName note state tags numberOfOrders
    amountSpent { amount currencyCode }
    createdAt updatedAt
    defaultEmailAddress { emailAddress }
    defaultPhoneNumber { phoneNumber }
    defaultAddress { address1 address2 city province provinceCode countryCodeV2 zip phone }
"""
# (alias in the result, namespace, key) of each metafield a pull reads. The client knows none of its own: the
# caller passes those it reads (customers: the loyalty metafields, from the settings the sync writes with).
Metafields = Sequence[tuple[str, str, str]]
DEFAULT_METAFIELDS: tuple[tuple[str, str, str], ...] = ()


def _gql_string(value: str) -> str:
    """A GraphQL string literal (JSON's escapes are GraphQL's)."""
    return json.dumps(value)


def customer_fields(metafields: Metafields = DEFAULT_METAFIELDS) -> str:
    """The customer selection with these metafields read under their aliases (``alias: {value}``)."""
    lines = [f"    {alias}: metafield(namespace: {_gql_string(namespace)}, key: {_gql_string(key)}) {{ value }}"
             for alias, namespace, key in metafields]
    return CUSTOMER_BASE_FIELDS + "\n".join(lines) + ("\n" if lines else "")


CUSTOMER_FIELDS = customer_fields()

CUSTOMERS_BULK_QUERY = """{
  customers%(args)s {
    edges { node { %(fields)s } }
  }
}"""

CUSTOMERS_COUNT = """
query ShopBridgeCustomersCount($query: String) {
  customersCount(query: $query) { count precision }
}
"""

BULK_OPERATION_FIELDS = ("id status errorCode objectCount rootObjectCount fileSize url partialDataUrl createdAt "
                         "completedAt")

BULK_RUN_QUERY = """
mutation ShopBridgeBulkRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { BULK_OPERATION_FIELDS }
    userErrors { code field message }
  }
}
""".replace("BULK_OPERATION_FIELDS", BULK_OPERATION_FIELDS)

# node(id:) works on every version; bulkOperation(id:) only from 2026-01.
BULK_OPERATION_BY_ID = """
query ShopBridgeBulkOperation($id: ID!) {
  node(id: $id) { ... on BulkOperation { BULK_OPERATION_FIELDS } }
}
""".replace("BULK_OPERATION_FIELDS", BULK_OPERATION_FIELDS)

CURRENT_BULK_OPERATION = """
query ShopBridgeCurrentBulkOperation {
  currentBulkOperation(type: QUERY) { BULK_OPERATION_FIELDS query }
}
""".replace("BULK_OPERATION_FIELDS", BULK_OPERATION_FIELDS)

BULK_CANCEL = """
mutation ShopBridgeBulkCancel($id: ID!) {
  bulkOperationCancel(id: $id) {
    bulkOperation { BULK_OPERATION_FIELDS }
    userErrors { field message }
  }
}
""".replace("BULK_OPERATION_FIELDS", BULK_OPERATION_FIELDS)

SHOP_QUERY = """
query ShopBridgeShop {
  shop { name myshopifyDomain }
}
"""

CUSTOMER_LOOKUP = """
query ShopBridgeCustomerLookup($query: String!) {
  customers(first: 2, query: $query) { nodes { %s } }
}
"""

CUSTOMERS_QUERY = """
query ShopBridgeCustomers($first: Int!, $after: String, $query: String, $sortKey: CustomerSortKeys!) {
  customers(first: $first, after: $after, query: $query, sortKey: $sortKey) {
    nodes { %s }
    pageInfo { hasNextPage endCursor }
  }
}
"""

METAFIELDS_SET = """
mutation ShopBridgeMetafieldsSet($metafields: [MetafieldsSetInput!]!) {
  metafieldsSet(metafields: $metafields) {
    metafields { id namespace key value type updatedAt owner { ... on Customer { id } } }
    userErrors { field message code elementIndex }
  }
}
"""

CUSTOMER_MUTATION = """
mutation ShopBridge%(name)s($input: CustomerInput!) {
  %(field)s(input: $input) {
    customer { %(fields)s }
    userErrors { field message }
  }
}
"""


# --- products (shopify.md §7) ---------------------------------------------------------------------------
PRODUCT_FIELDS = "id legacyResourceId title handle status updatedAt"
VARIANT_FIELDS = "id legacyResourceId title sku barcode price compareAtPrice inventoryQuantity updatedAt"
LEVEL_FIELDS = 'location { id } quantities(names: ["available"]) { name quantity }'

# Bulk: products, their variants and each variant's levels (two nested connections); JSONL children carry
# __parentId: a variant's parent is its product, a level's parent is its variant.
PRODUCTS_BULK_QUERY = """{
  products%(args)s {
    edges { node { PRODUCT_FIELDS
      variants { edges { node { VARIANT_FIELDS
        inventoryItem { id inventoryLevels { edges { node { LEVEL_FIELDS } } } } } } }
    } }
  }
}""".replace("PRODUCT_FIELDS", PRODUCT_FIELDS).replace("VARIANT_FIELDS", VARIANT_FIELDS).replace(
    "LEVEL_FIELDS", LEVEL_FIELDS)

# Paged: variants with their product; a variant is stocked at a few locations (10 levels a page is plenty for a
# shop's locations; more are not read by this query).
VARIANTS_QUERY = """
query ShopBridgeVariants($first: Int!, $after: String, $query: String) {
  productVariants(first: $first, after: $after, query: $query, sortKey: ID) {
    nodes { VARIANT_FIELDS product { PRODUCT_FIELDS }
            inventoryItem { id inventoryLevels(first: 10) { nodes { LEVEL_FIELDS } } } }
    pageInfo { hasNextPage endCursor }
  }
}
""".replace("PRODUCT_FIELDS", PRODUCT_FIELDS).replace("VARIANT_FIELDS", VARIANT_FIELDS).replace(
    "LEVEL_FIELDS", LEVEL_FIELDS)

LOCATIONS_QUERY = """
query ShopBridgeLocations($first: Int!, $after: String) {
  locations(first: $first, after: $after, includeInactive: true, sortKey: ID) {
    nodes { id legacyResourceId name isActive fulfillsOnlineOrders }
    pageInfo { hasNextPage endCursor }
  }
}
"""

PRODUCTS_COUNT = """
query ShopBridgeProductsCount($query: String) {
  productsCount(query: $query) { count precision }
}
"""


class QueryCostExceeded(RequestRejected):
    """The query asks for more points than one call may have (Shopify's 1000-point cap, or a bucket smaller
    than the query): make it smaller."""

    def __init__(self, message: str, *, requested_cost: int, max_cost: int = MAX_QUERY_COST, **kw):
        super().__init__(message, **kw)
        self.requested_cost = requested_cost
        self.max_cost = max_cost


class BulkOperationInProgress(RequestRejected):
    """``OPERATION_IN_PROGRESS``: the app already runs as many bulk queries on this shop as its API version
    allows. Wait for one to finish and ask again."""


class BulkOperationFailed(UpstreamError):
    """A bulk operation ended without data to ingest (FAILED without partial data, CANCELED)."""


class ShopifyClient(BaseClient):
    """Safe for a few threads sending at once (the loyalty sync keeps several calls in flight): pacing
    counts the cost of calls already sent but not answered, so together they stay within the bucket.

    Credentials: a legacy custom-app token (``access_token``, never expires), or a Dev Dashboard app's
    ``client_id`` + ``client_secret``: then the client obtains a token by the client-credentials grant,
    keeps it with its expiry in ``token_store`` (shared by every worker when it is the Connection row),
    renews it shortly before it expires and once on a 401, and never logs it.

    ``cost_budget``: a ``budget.SharedCostBudget`` to pace by a bucket estimate shared with other processes
    (``from_connection`` sets one up); without it the estimate lives in this client only.
    """

    system = "shopify"

    def __init__(self, base_url: str, *, access_token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, token_store: TokenStore | None = None,
                 api_version: str = DEFAULT_API_VERSION, cost_budget=None, **base_kwargs):
        super().__init__(base_url, **base_kwargs)
        self.api_version = api_version
        self.credentials: ClientCredentials | None = None
        if client_id and client_secret:
            self.credentials = ClientCredentials(self.base_url, client_id, client_secret,
                                                 timeout=self.timeout)
            self.token_store = token_store or MemoryTokenStore()
            self._masked_token = f"client {client_id[:6]}…"
        elif access_token:
            self.token_store = None
            self._masked_token = mask_secret(access_token)
            self.session.headers["X-Shopify-Access-Token"] = access_token
        else:
            raise ValueError("a Shopify connection needs an access token, or a client id and client secret")
        self.session.headers["Accept"] = "application/json"
        self.cost_budget = cost_budget
        self.tokens_obtained = 0  # client-credentials grants this client made
        self.tokens_refused = 0  # 401s that made it renew a token before its expiry
        self._token_cache = None  # the StoredToken in use
        self.path = f"/admin/api/{api_version}/graphql.json"
        # Cost accounting, read by benchmarks and job metadata.
        self.calls = 0  # HTTP requests sent, retries included
        self.cost_spent = 0  # sum of actualQueryCost
        self.throttled = 0  # THROTTLED answers received
        self.paced_seconds = 0.0  # time spent waiting for the bucket before sending
        self.throttle: dict | None = None  # last throttleStatus seen
        self._throttle_seen_at = 0.0
        self._expected_cost: dict[str, float] = {}  # query text → requestedQueryCost last reported
        self._fitting_page_size: dict[str, int] = {}  # page query text → largest page it may ask for
        self._version_warned = False
        self._lock = threading.Lock()
        self._in_flight = 0.0  # cost reserved by calls sent and not yet answered
        self._answer_local = threading.local()  # extensions.cost of this thread's last answer

    @classmethod
    def from_connection(cls, conn, **kw) -> ShopifyClient:
        """The client for a stored connection: client id + secret when set (the token is kept on the
        Connection row, shared by every worker), else the legacy token; pacing shared across processes."""
        from .budget import shared_cost_budget
        from .tokens import ConnectionTokenStore

        if conn.client_id and conn.client_secret:
            kw.setdefault("token_store", ConnectionTokenStore(conn.pk))
            credentials = {"client_id": conn.client_id, "client_secret": conn.client_secret}
        else:
            credentials = {"access_token": conn.access_token}
        kw.setdefault("cost_budget", shared_cost_budget(conn.base_url))
        return cls(conn.base_url, api_version=conn.api_version or DEFAULT_API_VERSION, **credentials, **kw)

    def __repr__(self) -> str:
        return f"<ShopifyClient {self.base_url} api={self.api_version} token={self._masked_token}>"

    # --- transport ------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None, *,
                estimated_cost: float | None = None, retry_unavailable: bool = True) -> dict:
        """Run one query or mutation; returns its ``data``. Raises typed errors (see ``check_response``).
        ``retry_unavailable=False``: a timeout, 5xx or dropped connection is raised at once (for writes
        that are not safe to repeat blindly); rate limits are still waited out and retried."""
        body = {"query": query, "variables": variables or {}}
        # In-process pacing reserves once per call (its retries wait as the server says); a shared budget
        # reserves per attempt (see _send_once), as other processes spend the bucket meanwhile.
        reserved = self._reserve(self._expected_cost.get(query, estimated_cost)) if self.cost_budget is None else 0
        try:
            if not retry_unavailable:
                payload = self._call_without_blind_retries(body, estimated_cost)
            else:
                payload = self.call("POST", self.path, json=body, _estimated_cost=estimated_cost)
        finally:
            with self._lock:
                self._in_flight -= reserved
        requested = _cost_of(payload).get("requestedQueryCost")
        if requested is not None:
            self._expected_cost[query] = float(requested)
        return payload["data"]

    def _call_without_blind_retries(self, body: dict, estimated_cost: float | None) -> dict:
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, RateLimited)),
            wait=self._wait,
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_retry_seconds),
            sleep=self.sleep, before_sleep=self._before_sleep, reraise=True,
        )
        return self.observed(self.path, retrying, self._send_once, "POST", self.path, json=body,
                             _estimated_cost=estimated_cost)

    def _reserve(self, expected_cost: float | None) -> float:
        """Wait until the bucket, as last reported and refilled since, holds ``expected_cost`` on top of what
        calls in flight will take, then reserve it. Returns the cost reserved (release it when answered)."""
        if not expected_cost:
            return 0.0
        while True:
            with self._lock:
                if not self.throttle:
                    self._in_flight += expected_cost
                    return expected_cost
                maximum = float(self.throttle["maximumAvailable"])
                restore = float(self.throttle["restoreRate"])
                available = self._available(time.monotonic())
                deficit = min(expected_cost, maximum) + self._in_flight - available
                if deficit <= 0 or restore <= 0 or (self._in_flight == 0 and expected_cost > maximum):
                    self._in_flight += expected_cost
                    return expected_cost
                wait = deficit / restore
                self.paced_seconds += wait
            log.debug("shopify: waiting %.2f s for %.0f cost points", wait, deficit)
            self.sleep(wait)

    def _available(self, now: float) -> float:
        """Points in the bucket now, from the last reading plus the refill since (call under the lock)."""
        t = self.throttle
        refill = float(t["restoreRate"]) * (now - self._throttle_seen_at)
        return min(float(t["maximumAvailable"]), float(t["currentlyAvailable"]) + refill)

    def _send_once(self, method: str, path: str, **kwargs) -> Any:
        estimated = kwargs.pop("_estimated_cost", None)
        if self.cost_budget is None:
            return self._send_authenticated(method, path, **kwargs)
        # Shared budget: each attempt takes its cost from the estimate every process shares before it is
        # sent; the answer settles it (a THROTTLED one gives it all back).
        query = (kwargs.get("json") or {}).get("query")
        expected = self._expected_cost.get(query, estimated)
        if expected is None:
            # Other processes may have drained the bucket: take a guess now; the answer refunds the excess.
            expected = UNKNOWN_QUERY_COST
        flight = self._reserve_shared(expected)
        try:
            return self._send_authenticated(method, path, **kwargs)
        finally:
            self.cost_budget.settle(flight, *self._take_answer_cost())

    def _send_authenticated(self, method: str, path: str, **kwargs) -> Any:
        if self.credentials is None:
            with self._lock:
                self.calls += 1
            return super()._send_once(method, path, **kwargs)
        token = self._current_token()
        for renewed in (False, True):
            headers = {**kwargs.pop("headers", {}), "X-Shopify-Access-Token": token}
            with self._lock:
                self.calls += 1
            try:
                return super()._send_once(method, path, headers=headers, **kwargs)
            except AuthRejected as exc:
                if renewed or exc.status != 401:
                    raise
                # Revoked or expired early: renew once (unless another worker already did) and resend.
                log.info("shopify: access token refused (401); renewing it")
                with self._lock:
                    self.tokens_refused += 1
                token = self._renew_token(stale=token)
        raise AssertionError("unreachable")

    # --- expiring tokens (client-credentials grant) ----------------------------------------------------
    def _current_token(self) -> str:
        # The token in hand while it is usable; then the store (another worker may have renewed it).
        cached = self._token_cache
        if cached is not None and cached.usable():
            return cached.token
        stored = self.token_store.load()
        if stored is not None and stored.usable():
            self._token_cache = stored
            return stored.token
        return self._renew_token(stale=stored.token if stored else None)

    def _renew_token(self, *, stale: str | None) -> str:
        def fetch():
            with self._lock:
                self.tokens_obtained += 1
            return self.credentials.obtain()

        self._token_cache = self.token_store.renew(stale, fetch)
        return self._token_cache.token

    def _reserve_shared(self, expected_cost: float | None) -> str | None:
        """Wait until the bucket estimate shared with other processes holds ``expected_cost``; take it for a
        call (returned: the flight to settle with the answer; None for a free call)."""
        if not expected_cost:
            return None
        while True:
            wait, flight = self.cost_budget.reserve(expected_cost)
            if flight is not None:
                return flight
            with self._lock:
                self.paced_seconds += wait
            log.debug("shopify: waiting %.2f s for %.0f cost points (shared budget)", wait, expected_cost)
            self.sleep(wait)

    def _take_answer_cost(self) -> tuple[float | None, dict | None]:
        cost = getattr(self._answer_local, "cost", None) or {}
        self._answer_local.cost = None
        return cost.get("actualQueryCost"), cost.get("throttleStatus")

    def _wait(self, state) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if (self.cost_budget is not None and isinstance(exc, RateLimited) and exc.code == "THROTTLED"
                and exc.retry_after is not None):
            # Shopify's own figure (its bucket, the query's requested cost) and no jitter: the shared estimate
            # already takes the senders in turn, and jitter only wasted restore time (a sync from an emptied
            # bucket lost 18 % of its budget here). Not zero: our expected cost of a query may be below what
            # Shopify now asks for it, and the estimate would let the retry go at once, to be refused again.
            return exc.retry_after
        return super()._wait(state)

    def check_response(self, response: requests.Response) -> dict:
        self._note_version(response)
        self.raise_for_status(response)
        payload = self.json(response)
        if not isinstance(payload, dict):
            raise BadPayload("GraphQL response is not an object", system=self.system,
                             status=response.status_code)
        cost = _cost_of(payload)
        self._answer_local.cost = cost
        with self._lock:
            if cost.get("throttleStatus"):
                # The server measured the bucket at some moment before this answer arrived; dating it to the
                # arrival under-counts the refill since, so pacing errs towards waiting a little too long.
                status = dict(cost["throttleStatus"])
                now = time.monotonic()
                if self.throttle and status.get("currentlyAvailable") is not None:
                    # With calls in flight, answers can arrive out of the order the server measured them
                    # in: an older, fuller reading must not raise the estimate above the current one.
                    status["currentlyAvailable"] = min(float(status["currentlyAvailable"]), self._available(now))
                self.throttle = status
                self._throttle_seen_at = now
            if cost.get("actualQueryCost") is not None:
                self.cost_spent += cost["actualQueryCost"]
        if payload.get("errors"):
            self._raise_for_errors(payload["errors"], cost)
        if not isinstance(payload.get("data"), dict):
            raise BadPayload("GraphQL response has no data", system=self.system, status=response.status_code)
        return payload

    def _raise_for_errors(self, errors: Any, cost: dict) -> None:
        errors = errors if isinstance(errors, list) else [{"message": str(errors)}]
        codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
        messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        if "THROTTLED" in codes:
            with self._lock:
                self.throttled += 1
            bucket = (cost.get("throttleStatus") or {}).get("maximumAvailable")
            requested = cost.get("requestedQueryCost")
            if bucket and requested and requested > bucket:
                # Waiting cannot help: the bucket never holds this much (small plans, or a sandbox plan).
                raise QueryCostExceeded(f"query cost {requested} exceeds the bucket size {bucket}",
                                        system=self.system, code="THROTTLED", requested_cost=int(requested),
                                        max_cost=int(bucket))
            raise RateLimited("throttled (query cost)", system=self.system, code="THROTTLED",
                              retry_after=_throttle_wait(cost))
        if "MAX_COST_EXCEEDED" in codes:
            detail = next(e["extensions"] for e in errors
                          if (e.get("extensions") or {}).get("code") == "MAX_COST_EXCEEDED")
            requested = detail.get("cost") or cost.get("requestedQueryCost") or 0
            raise QueryCostExceeded(messages, system=self.system, code="MAX_COST_EXCEEDED",
                                    requested_cost=int(requested),
                                    max_cost=int(detail.get("maxCost") or MAX_QUERY_COST))
        if "ACCESS_DENIED" in codes:
            raise AuthRejected(f"access denied: {messages}", system=self.system, code="ACCESS_DENIED")
        code = next((c for c in codes if c), "")
        raise RequestRejected(f"GraphQL errors: {messages}", system=self.system, code=code)

    def _note_version(self, response: requests.Response) -> None:
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.api_version and not self._version_warned:
            self._version_warned = True
            log.warning("shopify: asked for API %s but the shop served %s (retired or unknown version "
                        "falls forward); update the connection's api_version", self.api_version, served)

    # --- customers ------------------------------------------------------------------------------------
    def iter_customer_pages(self, query: str | None = None, *, after: str | None = None,
                            first: int = MAX_PAGE_SIZE, sort_key: str = "ID", fields: str | None = None,
                            metafields: Metafields = DEFAULT_METAFIELDS,
                            ) -> Iterator[tuple[list[dict], str | None, bool]]:
        """Yield ``(nodes, end_cursor, has_next)`` page by page, resuming after ``after``.

        ``fields``: the node selection (default: ``customer_fields(metafields)``, i.e. the usual customer
        fields plus each ``(alias, namespace, key)`` metafield read as ``alias: {value}``).

        ``end_cursor`` is None only for an empty page; keep the previous cursor as the checkpoint then.
        If ``first`` customers with these fields cost more than one call may (Shopify's single-query cap, or
        the bucket), the page size is cut to what fits, from the cost the refusal reports, instead of
        failing the pull.
        """
        text = CUSTOMERS_QUERY % (fields if fields is not None else customer_fields(metafields))
        yield from self.iter_connection_pages(text, "customers", {"query": query, "sortKey": sort_key},
                                              first=first, after=after)

    def iter_connection_pages(self, text: str, root: str, variables: dict, *, first: int = MAX_PAGE_SIZE,
                              after: str | None = None) -> Iterator[tuple[list[dict], str | None, bool]]:
        """Page through the root connection ``root`` of the query ``text`` (which takes ``$first`` and
        ``$after`` besides ``variables``): ``(nodes, end_cursor, has_next)`` per page, the page size cut to
        what one call may cost (see ``iter_customer_pages``)."""
        first = min(first, MAX_PAGE_SIZE, self._fitting_page_size.get(text, MAX_PAGE_SIZE))
        while True:
            try:
                data = self.graphql(text, {**variables, "first": first, "after": after})
            except QueryCostExceeded as exc:
                smaller = _page_size_within(first, exc.requested_cost, exc.max_cost)
                if smaller >= first:
                    raise
                log.info("shopify: %s %s a page would cost %s points; asking for %s", first, root,
                         exc.requested_cost, smaller)
                first = self._fitting_page_size[text] = smaller
                continue
            connection = data[root]
            nodes = connection["nodes"]
            page_info = connection["pageInfo"]
            end_cursor, has_next = page_info.get("endCursor"), bool(page_info.get("hasNextPage"))
            if has_next and (not end_cursor or end_cursor == after):
                raise BadPayload("hasNextPage without a new endCursor: refusing to loop on the same page",
                                 system=self.system)
            yield nodes, end_cursor, has_next
            if not has_next:
                return
            after = end_cursor

    # --- products -------------------------------------------------------------------------------------
    def iter_variant_pages(self, query: str | None = None, *, after: str | None = None,
                           first: int = MAX_PAGE_SIZE) -> Iterator[tuple[list[dict], str | None, bool]]:
        """``productVariants`` pages (each variant with its product and its ``available`` per location), sorted
        by id: the paged way to read the catalog (a bulk operation is the other)."""
        yield from self.iter_connection_pages(VARIANTS_QUERY, "productVariants", {"query": query},
                                              first=first, after=after)

    def locations(self) -> list[dict]:
        """Every location of the shop, inactive ones included (a shop has a handful; pages of 250)."""
        nodes: list[dict] = []
        for page, _, _ in self.iter_connection_pages(LOCATIONS_QUERY, "locations", {}):
            nodes.extend(page)
        return nodes

    def products_count(self, query: str | None = None) -> tuple[int, str]:
        count = self.graphql(PRODUCTS_COUNT, {"query": query})["productsCount"] or {}
        return int(count.get("count") or 0), str(count.get("precision") or "EXACT")

    def customers_count(self, query: str | None = None) -> tuple[int, str]:
        """``customersCount(query:)`` → ``(count, precision)``; precision is EXACT or AT_LEAST."""
        count = self.graphql(CUSTOMERS_COUNT, {"query": query})["customersCount"] or {}
        return int(count.get("count") or 0), str(count.get("precision") or "EXACT")

    def customer_create(self, input: dict) -> tuple[dict | None, list[dict]]:
        """``customerCreate``: ``(customer or None, userErrors)``; user errors are answers, not exceptions.

        A create is not safe to repeat blindly: Shopify may commit it and then time out, answer 5xx or drop
        the connection, and a plain retry would then fail on "phone has already been taken". So after such a
        failure the customer is first looked up by phone, then email; if it exists, it is returned as the
        create's result (the write went through) instead of creating it again."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._customer_mutation("customerCreate", input, retry_unavailable=False)
            except UpstreamUnavailable as exc:
                if attempt >= self.max_attempts:
                    raise
                log.warning("shopify: customerCreate failed (%s); checking whether it went through", exc)
                self.retries += 1
                self.sleep(min(self.backoff_after(attempt), 5.0))
            existing = self.find_customer(phone=input.get("phone"), email=input.get("email"))
            if existing is not None:
                log.info("shopify: customerCreate had gone through before the failure: %s", existing.get("id"))
                return existing, []

    def backoff_after(self, attempt: int) -> float:
        return min(0.5 * 2 ** (attempt - 1), 30.0)

    def find_customer(self, *, phone: str | None = None, email: str | None = None) -> dict | None:
        """The customer with exactly this phone (E.164) or else this email, or None (full customer fields)."""
        for field, value in (("phone", phone), ("email", email)):
            if not value:
                continue
            nodes = self.graphql(CUSTOMER_LOOKUP % CUSTOMER_FIELDS,
                                 {"query": f"{field}:{_search_value(value)}"})["customers"]["nodes"]
            if nodes:
                return nodes[0]
        return None

    def customer_update(self, input: dict) -> tuple[dict | None, list[dict]]:
        """``customerUpdate`` (``input["id"]`` required): ``(customer or None, userErrors)``."""
        return self._customer_mutation("customerUpdate", input)

    def _customer_mutation(self, field: str, input: dict, *,
                           retry_unavailable: bool = True) -> tuple[dict | None, list[dict]]:
        name = field[0].upper() + field[1:]
        text = CUSTOMER_MUTATION % {"name": name, "field": field, "fields": CUSTOMER_FIELDS}
        payload = self.graphql(text, {"input": input}, retry_unavailable=retry_unavailable)[field] or {}
        return payload.get("customer"), payload.get("userErrors") or []

    # --- connection check -----------------------------------------------------------------------------
    def test_connection(self) -> str:
        """One cheap authenticated call: ``"OK: shop <name> (<domain>)"``. Raises the typed error
        (AuthRejected for refused credentials, UpstreamUnavailable when unreachable …) otherwise."""
        if self.credentials is not None:
            # Prove the client id + secret themselves, not only a token obtained with them earlier.
            stored = self.token_store.load()
            self._renew_token(stale=stored.token if stored else None)
        shop = self.graphql(SHOP_QUERY)["shop"]
        return f"OK: shop {shop['name']} ({shop['myshopifyDomain']}), API {self.api_version}"

    # --- bulk operations ------------------------------------------------------------------------------
    def bulk_run_query(self, bulk_query: str) -> dict:
        """Start a bulk query; returns the BulkOperation. Raises BulkOperationInProgress when the app already
        runs as many as its version allows, RequestRejected for any other refusal (an invalid query)."""
        payload = self.graphql(BULK_RUN_QUERY, {"query": bulk_query})["bulkOperationRunQuery"] or {}
        errors = payload.get("userErrors") or []
        if errors:
            messages = "; ".join(str(e.get("message")) for e in errors)
            if any(e.get("code") == "OPERATION_IN_PROGRESS" or "already in progress" in str(e.get("message"))
                   for e in errors):
                raise BulkOperationInProgress(messages, system=self.system, code="OPERATION_IN_PROGRESS")
            raise RequestRejected(f"bulk query refused: {messages}", system=self.system,
                                  code=str(errors[0].get("code") or ""))
        operation = payload.get("bulkOperation")
        if not operation or not operation.get("id"):
            raise BadPayload("bulkOperationRunQuery returned no operation", system=self.system)
        return operation

    def start_bulk_query(self, bulk_query: str, *, wait_seconds: float = 30.0,
                         give_up_after: float = 3600.0) -> dict:
        """``bulk_run_query``, waiting out "already in progress" (another bulk query of this app on this
        shop) every ``wait_seconds``, for at most ``give_up_after`` seconds."""
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                return self.bulk_run_query(bulk_query)
            except BulkOperationInProgress as exc:
                if time.monotonic() + wait_seconds > deadline:
                    raise
                log.info("shopify: %s; asking again in %.0f s", exc, wait_seconds)
                self.sleep(wait_seconds)

    def bulk_operation(self, operation_id: str) -> dict | None:
        """The BulkOperation with this gid (status, objectCount, url …), or None if the shop has none."""
        node = self.graphql(BULK_OPERATION_BY_ID, {"id": operation_id}).get("node")
        return node if node and node.get("id") else None

    def current_bulk_operation(self) -> dict | None:
        return self.graphql(CURRENT_BULK_OPERATION).get("currentBulkOperation")

    def bulk_cancel(self, operation_id: str) -> tuple[dict | None, list[dict]]:
        payload = self.graphql(BULK_CANCEL, {"id": operation_id})["bulkOperationCancel"] or {}
        return payload.get("bulkOperation"), payload.get("userErrors") or []

    # --- metafields -----------------------------------------------------------------------------------
    def metafields_set(self, metafields: list[dict]) -> tuple[list[dict], list[dict]]:
        """Set up to 25 metafields atomically. Returns ``(metafields, userErrors)``: user errors are business
        answers (nothing was written; ``elementIndex`` names the input), not exceptions."""
        if len(metafields) > MAX_METAFIELDS_PER_CALL:
            raise ValueError(f"metafieldsSet takes at most {MAX_METAFIELDS_PER_CALL} metafields per call, "
                             f"got {len(metafields)}")
        if not metafields:
            return [], []
        payload = self.graphql(METAFIELDS_SET, {"metafields": metafields})["metafieldsSet"] or {}
        return payload.get("metafields") or [], payload.get("userErrors") or []


def _cost_of(payload: dict) -> dict:
    extensions = payload.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    return cost if isinstance(cost, dict) else {}


def _throttle_wait(cost: dict) -> float | None:
    status = cost.get("throttleStatus") or {}
    requested, available = cost.get("requestedQueryCost"), status.get("currentlyAvailable")
    restore = status.get("restoreRate")
    if requested is None or available is None or not restore:
        return None
    return max(float(requested) - float(available), 0.0) / float(restore)


def _page_size_within(first: int, cost: int, max_cost: int) -> int:
    """The page size that fits ``max_cost``, assuming cost ≈ 2 + first × (cost of one row)."""
    per_row = max(cost - 2, 1) / max(first, 1)
    return max(int((max_cost - 2) // per_row), 1)


def _search_value(value: str) -> str:
    """A search-syntax value: quoted when it holds spaces or quotes."""
    if any(c in value for c in ' "\'():'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def customers_bulk_query(query: str | None = None, *, metafields: Metafields = DEFAULT_METAFIELDS,
                         sort_key: str = "ID") -> str:
    """The bulk query document for every customer matching ``query`` with the usual fields and these
    metafields (a bulk query takes no variables: the search string is inlined as a literal)."""
    args = [f"sortKey: {sort_key}"]
    if query:
        args.insert(0, f"query: {_gql_string(query)}")
    return CUSTOMERS_BULK_QUERY % {"args": f"({', '.join(args)})", "fields": customer_fields(metafields)}


def products_bulk_query(query: str | None = None) -> str:
    """The bulk query document for every product matching ``query`` × its variants × their ``available``
    quantity per location."""
    args = "(sortKey: ID)" if not query else f"(query: {_gql_string(query)}, sortKey: ID)"
    return PRODUCTS_BULK_QUERY % {"args": args}
