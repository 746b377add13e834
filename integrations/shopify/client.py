"""Shopify Admin GraphQL client: one endpoint, the access-token header, and pacing by calculated query cost.

Shopify limits an (app, shop) pair with a leaky bucket of cost points and reports the bucket after every
call (``extensions.cost.throttleStatus``). The client remembers that report and, before the next call,
waits just long enough for the bucket to hold the query's expected cost, so a long pull runs at the
restore rate instead of bouncing off THROTTLED. When it is throttled anyway (another client of the same
app), it waits exactly the deficit the server reported, through the base class's bounded retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from integrations.errors import AuthRejected, BadPayload, RateLimited, RequestRejected
from integrations.http import BaseClient
from integrations.secrets import mask_secret

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-10"
MAX_PAGE_SIZE = 250
MAX_METAFIELDS_PER_CALL = 25
MAX_QUERY_COST = 1000

# Customer fields as named in 2026-10 (defaultEmailAddress/defaultPhoneNumber replace the deprecated
# email/phone). Each nested object costs a point per customer, so this set costs ~7 points a row.
CUSTOMER_FIELDS = """
    id legacyResourceId firstName lastName displayName note state tags numberOfOrders
    amountSpent { amount currencyCode }
    createdAt updatedAt
    defaultEmailAddress { emailAddress }
    defaultPhoneNumber { phoneNumber }
    defaultAddress { address1 address2 city province provinceCode countryCodeV2 zip phone }
    totalSpent: metafield(namespace: "custom", key: "total_spent") { value }
    loyalty: metafield(namespace: "custom", key: "loyalty_tier") { value }
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


class QueryCostExceeded(RequestRejected):
    """The query asks for more points than one call may have (Shopify's 1000-point cap, or a bucket smaller
    than the query): make it smaller."""

    def __init__(self, message: str, *, requested_cost: int, max_cost: int = MAX_QUERY_COST, **kw):
        super().__init__(message, **kw)
        self.requested_cost = requested_cost
        self.max_cost = max_cost


class ShopifyClient(BaseClient):
    """Safe for a few threads sending at once (the loyalty sync keeps several calls in flight): pacing
    counts the cost of calls already sent but not answered, so together they stay within the bucket."""

    system = "shopify"

    def __init__(self, base_url: str, *, access_token: str, api_version: str = DEFAULT_API_VERSION,
                 **base_kwargs):
        super().__init__(base_url, **base_kwargs)
        self.api_version = api_version
        self._masked_token = mask_secret(access_token)
        self.session.headers["X-Shopify-Access-Token"] = access_token
        self.session.headers["Accept"] = "application/json"
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

    @classmethod
    def from_connection(cls, conn, **kw) -> ShopifyClient:
        return cls(conn.base_url, access_token=conn.access_token,
                   api_version=conn.api_version or DEFAULT_API_VERSION, **kw)

    def __repr__(self) -> str:
        return f"<ShopifyClient {self.base_url} api={self.api_version} token={self._masked_token}>"

    # --- transport ------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict | None = None, *,
                estimated_cost: float | None = None) -> dict:
        """Run one query or mutation; returns its ``data``. Raises typed errors (see ``check_response``)."""
        reserved = self._reserve(self._expected_cost.get(query, estimated_cost))
        try:
            payload = self.call("POST", self.path, json={"query": query, "variables": variables or {}})
        finally:
            with self._lock:
                self._in_flight -= reserved
        requested = _cost_of(payload).get("requestedQueryCost")
        if requested is not None:
            self._expected_cost[query] = float(requested)
        return payload["data"]

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
        with self._lock:
            self.calls += 1
        return super()._send_once(method, path, **kwargs)

    def check_response(self, response: requests.Response) -> dict:
        self._note_version(response)
        self.raise_for_status(response)
        payload = self.json(response)
        if not isinstance(payload, dict):
            raise BadPayload("GraphQL response is not an object", system=self.system,
                             status=response.status_code)
        cost = _cost_of(payload)
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
                            first: int = MAX_PAGE_SIZE, sort_key: str = "ID",
                            fields: str = CUSTOMER_FIELDS) -> Iterator[tuple[list[dict], str | None, bool]]:
        """Yield ``(nodes, end_cursor, has_next)`` page by page, resuming after ``after``.

        ``end_cursor`` is None only for an empty page; keep the previous cursor as the checkpoint then.
        If ``first`` customers with these fields cost more than one call may (Shopify's single-query cap, or
        the bucket), the page size is cut to what fits, from the cost the refusal reports, instead of
        failing the pull.
        """
        text = CUSTOMERS_QUERY % fields
        first = min(first, MAX_PAGE_SIZE, self._fitting_page_size.get(text, MAX_PAGE_SIZE))
        while True:
            variables = {"first": first, "after": after, "query": query, "sortKey": sort_key}
            try:
                data = self.graphql(text, variables)
            except QueryCostExceeded as exc:
                smaller = _page_size_within(first, exc.requested_cost, exc.max_cost)
                if smaller >= first:
                    raise
                log.info("shopify: %s customers a page would cost %s points; asking for %s", first,
                         exc.requested_cost, smaller)
                first = self._fitting_page_size[text] = smaller
                continue
            connection = data["customers"]
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

    def customer_create(self, input: dict) -> tuple[dict | None, list[dict]]:
        """``customerCreate``: ``(customer or None, userErrors)``; user errors are answers, not exceptions."""
        return self._customer_mutation("customerCreate", input)

    def customer_update(self, input: dict) -> tuple[dict | None, list[dict]]:
        """``customerUpdate`` (``input["id"]`` required): ``(customer or None, userErrors)``."""
        return self._customer_mutation("customerUpdate", input)

    def _customer_mutation(self, field: str, input: dict) -> tuple[dict | None, list[dict]]:
        name = field[0].upper() + field[1:]
        text = CUSTOMER_MUTATION % {"name": name, "field": field, "fields": CUSTOMER_FIELDS}
        payload = self.graphql(text, {"input": input})[field] or {}
        return payload.get("customer"), payload.get("userErrors") or []

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
