"""Shopify Admin GraphQL sandbox: ``POST /admin/api/{version}/graphql.json`` over generated customers.

What it models (facts in shared/upstreams/shopify.md): the ``X-Shopify-Access-Token`` check (401 with
Shopify's text), version fall-forward (unknown or retired versions are served as the oldest supported one,
named in ``X-Shopify-API-Version``), a schema subset executed by graphql-core, the calculated query cost
(MAX_COST_EXCEEDED over 1000 points, requested cost debited up front and the unused part refunded),
a leaky bucket per shop with THROTTLED as HTTP 200, ``extensions.cost`` on every executed request, and
stateful ``metafieldsSet`` / ``customerCreate`` / ``customerUpdate``. Data lives in ``sandbox_store``.

Test hooks (``POST /_sandbox/shopify/<action>``): ``expected`` {query} → matching legacy ids; ``plan``
{maximum, restore} → bucket size; ``inject_user_errors`` {owner_ids, message}; ``customer`` {id};
``stats``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLNonNull,
    OperationType,
    execute,
    get_operation_ast,
    is_leaf_type,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

try:
    from graphql.execution import Executor
except ImportError:  # graphql-core 3.2 has no pluggable executor: the stock one is used as is
    Executor = None

from integrations.sandbox.base import SandboxApp, SandboxOptions, SandboxRequest, SandboxResponse
from integrations.sandbox.population import Population

from .sandbox_schema import MAX_QUERY_COST, CostModel, make_schema
from .sandbox_store import CustomerStore, public_view

SANDBOX_ACCESS_TOKEN = "shpat_sandbox_0123456789abcdef"  # noqa: S105 - public by design: sandbox only
SUPPORTED_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10")
GRAPHQL_PATH = re.compile(r"^/admin/api/([^/]+)/graphql\.json$")
AUTH_FAILURE_TEXT = "[API] Invalid API key or access token (unrecognized login or wrong password)"
STANDARD_PLAN = (2000.0, 100.0)  # maximumAvailable, restoreRate (observed for Standard plans)


class LeakyBucket:
    """Shopify's cost bucket: refills at ``restore`` points/s up to ``maximum``. Thread-safe."""

    def __init__(self, maximum: float, restore: float):
        self.maximum, self.restore = float(maximum), float(restore)
        self._level = self.maximum
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> float:
        now = time.monotonic()
        self._level = min(self.maximum, self._level + (now - self._at) * self.restore)
        self._at = now
        return self._level

    def take(self, cost: float) -> bool:
        with self._lock:
            if self._refill() < cost:
                return False
            self._level -= cost
            return True

    def give_back(self, points: float) -> None:
        with self._lock:
            self._refill()
            self._level = min(self.maximum, self._level + points)

    def status(self) -> dict:
        with self._lock:
            available = self._refill()
        return {"maximumAvailable": self.maximum, "currentlyAvailable": int(available),
                "restoreRate": self.restore}


@dataclass
class RequestContext:
    """What resolvers see as ``info.context``."""

    store: CustomerStore
    search: list[dict] = field(default_factory=list)  # extensions.search entries (query warnings)


@dataclass
class PreparedDocument:
    document: DocumentNode | None
    errors: list[dict]
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)


def _never_awaitable(value) -> bool:
    # Every resolver here is synchronous; skipping graphql-core's awaitable probe on each of the thousands
    # of values in a page of 250 customers saves about a tenth of the execution time.
    return False


if Executor is not None:
    class _LeafFastExecutor(Executor):
        """graphql-core's executor with a shortcut for the commonest field: a scalar read from a dict with no
        resolver and no arguments. Such a field needs no ResolveInfo, which is most of its cost; a page of 250
        customers has some 5,000 of them. Anything else, and any value that does not coerce cleanly, takes
        the normal path (which also reports the errors)."""

        def execute_field(self, parent_type, source, field_details_list, path, position_context):
            node = field_details_list[0].node
            if type(source) is dict and not node.arguments:
                field_def = parent_type.fields.get(node.name.value)
                if field_def is not None and field_def.resolve is None:
                    field_type = field_def.type
                    non_null = isinstance(field_type, GraphQLNonNull)
                    leaf = field_type.of_type if non_null else field_type
                    if is_leaf_type(leaf):
                        value = source.get(node.name.value)
                        if value is None and not non_null:
                            return None
                        if value is not None:
                            try:
                                coerced = leaf.coerce_output_value(value)
                            except Exception:  # the normal path below reports it properly
                                coerced = None
                            if coerced is not None:
                                return coerced
            return super().execute_field(parent_type, source, field_details_list, path, position_context)

    EXECUTOR_OPTIONS = {"executor_class": _LeafFastExecutor}
else:
    EXECUTOR_OPTIONS = {}


# --- resolvers -----------------------------------------------------------------------------------------
def _resolve_customers(root, info, **args):
    connection, warnings = info.context.store.page(
        first=args.get("first"), after=args.get("after"), last=args.get("last"), before=args.get("before"),
        reverse=args.get("reverse") or False, sort_key=args.get("sortKey") or "ID", query=args.get("query"),
    )
    if warnings:
        info.context.search.append({"path": list(info.path.as_list()), "query": args.get("query"),
                                    "warnings": warnings})
    return connection


def _resolve_metafield(customer, info, key, namespace=None):
    if namespace is None and "." in key:  # metafield(key: "custom.total_spent") names both at once
        namespace, key = key.split(".", 1)
    return info.context.store.metafield(customer["_id"], namespace or "$app", key)


def _resolve_metafields(customer, info, first=None, after=None, last=None, before=None, reverse=False,
                        namespace=None, keys=None):
    items = [m for m in info.context.store.metafields_of(customer["_id"])
             if (namespace is None or m["namespace"] == namespace)
             and (keys is None or f"{m['namespace']}.{m['key']}" in keys)]
    if reverse:
        items.reverse()
    ids = [m["id"] for m in items]
    start = ids.index(after) + 1 if after in ids else 0
    end = ids.index(before) if before in ids else len(items)
    window = items[start:end]
    if first is not None:
        page, has_next, has_previous = window[:first], len(window) > first, start > 0
    else:
        size = last if last is not None else len(window)
        page = window[max(len(window) - size, 0):]
        has_next, has_previous = end < len(items), len(window) > size
    return {  # the metafield's gid doubles as its cursor: unique and stable
        "nodes": page, "edges": [{"cursor": m["id"], "node": m} for m in page],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_previous,
                     "startCursor": page[0]["id"] if page else None,
                     "endCursor": page[-1]["id"] if page else None},
    }


@lru_cache(maxsize=1)
def _schema():
    schema = make_schema()
    query, mutation = schema.query_type.fields, schema.mutation_type.fields
    query["customers"].resolve = _resolve_customers
    query["customer"].resolve = lambda root, info, **args: info.context.store.customer_by_gid(args["id"])
    customer = schema.type_map["Customer"].fields
    customer["metafield"].resolve = _resolve_metafield
    customer["metafields"].resolve = _resolve_metafields
    mutation["metafieldsSet"].resolve = lambda root, info, metafields: info.context.store.metafields_set(
        metafields)
    mutation["customerCreate"].resolve = lambda root, info, **args: info.context.store.customer_create(
        args["input"])
    mutation["customerUpdate"].resolve = lambda root, info, **args: info.context.store.customer_update(
        args["input"])
    return schema


@lru_cache(maxsize=512)
def _prepare(query: str) -> PreparedDocument:
    """Parse and validate once per query text: pagers send the same text page after page."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return PreparedDocument(None, [exc.formatted])
    errors = validate(_schema(), document)
    if errors:
        return PreparedDocument(None, [e.formatted for e in errors])
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return PreparedDocument(document, [], fragments)


class ShopifySandbox(SandboxApp):
    name = "shopify"

    def __init__(self, options: SandboxOptions, population: Population | None = None):
        population = population or Population(
            seed=options.seed, nhanh_customers=options.customers, shopify_customers=options.shopify_customers,
            overlap=options.overlap)
        super().__init__(options, population)
        self.schema = _schema()
        self.store = CustomerStore(population, options.seed, malformed=self.roll_malformed)
        self.bucket = LeakyBucket(*STANDARD_PLAN)
        self.throttled = 0
        self.cost_spent = 0
        self._counters_lock = threading.Lock()  # requests are served on many threads

    # --- HTTP -----------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        match = GRAPHQL_PATH.match(request.path)
        if not match or request.method != "POST":
            return SandboxResponse(404, {"errors": "Not Found"})
        if self.faults.auth_reject or request.header("X-Shopify-Access-Token") != SANDBOX_ACCESS_TOKEN:
            return SandboxResponse(401, {"errors": AUTH_FAILURE_TEXT})
        version = match.group(1)
        served = version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        headers = {"X-Shopify-API-Version": served}
        body = self._read_body(request)
        if body is None:
            return SandboxResponse(400, {"errors": {"query": "Required parameter missing or invalid"}},
                                   headers)
        query, variables, operation_name = body
        status, payload = self.execute(query, variables, operation_name)
        return SandboxResponse(status, payload, headers)

    @staticmethod
    def _read_body(request: SandboxRequest) -> tuple[str, dict, str | None] | None:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/graphql":
            return request.body.decode("utf-8", "replace"), {}, None
        try:
            body = request.json()
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return None
        variables = body.get("variables") or {}
        return body["query"], variables if isinstance(variables, dict) else {}, body.get("operationName")

    def execute(self, query: str, variables: dict, operation_name: str | None) -> tuple[int, dict]:
        prepared = _prepare(query)
        if prepared.errors:
            return 200, {"errors": prepared.errors}
        operation = get_operation_ast(prepared.document, operation_name)
        if operation is None:
            message = (f"Unknown operation named \"{operation_name}\"." if operation_name
                       else "Must provide operation name if query contains multiple operations.")
            return 200, {"errors": [{"message": message}]}
        coerced = get_variable_values(self.schema, operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            return 200, {"errors": [e.formatted for e in coerced]}
        if operation.operation == OperationType.SUBSCRIPTION:
            return 200, {"errors": [{"message": "Subscriptions are not supported."}]}

        cost = CostModel(self.schema, operation, prepared.fragments, coerced)
        requested = cost.requested()
        if requested > MAX_QUERY_COST:
            return 200, {"errors": [{
                "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                           f"({MAX_QUERY_COST}).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
            }], "extensions": {"cost": self._cost_report(requested, None)}}
        limited = self.faults.rate_limit_enabled
        if limited and not self.bucket.take(requested):
            with self._counters_lock:
                self.throttled += 1
            return 200, {"errors": [{
                "message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
            }], "extensions": {"cost": self._cost_report(requested, None)}}

        context = RequestContext(self.store)
        result = execute(self.schema, prepared.document, context_value=context, variable_values=variables,
                         operation_name=operation_name, is_awaitable=_never_awaitable, **EXECUTOR_OPTIONS)
        actual = min(cost.actual(result.data), requested)
        if limited:
            self.bucket.give_back(requested - actual)
        with self._counters_lock:
            self.cost_spent += actual
        payload: dict = {}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        payload["data"] = result.data
        payload["extensions"] = {"cost": self._cost_report(requested, actual)}
        if context.search:
            payload["extensions"]["search"] = context.search
        return 200, payload

    def _cost_report(self, requested: int, actual: int | None) -> dict:
        if self.faults.rate_limit_enabled:
            throttle = self.bucket.status()
        else:  # unlimited: a pacing client must see a full bucket and never wait
            maximum = self.bucket.maximum
            throttle = {"maximumAvailable": maximum, "currentlyAvailable": int(maximum),
                        "restoreRate": self.bucket.restore}
        return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": throttle}

    # --- error shapes ---------------------------------------------------------------------------------
    def rate_limited_response(self, request: SandboxRequest, retry_after: float) -> SandboxResponse:
        text = ("Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted "
                "service.")
        return SandboxResponse(429, {"errors": text}, {"Retry-After": f"{max(retry_after, 0):.1f}"})

    def server_error_response(self, request: SandboxRequest, status: int) -> SandboxResponse:
        text = "Internal Server Error" if status == 500 else "Service Unavailable"
        return SandboxResponse(status, {"errors": text})

    # --- test hooks -----------------------------------------------------------------------------------
    def control(self, action: str, payload: dict):
        if action == "expected":
            return self.store.expected(payload.get("query"))
        if action == "plan":
            maximum, restore = STANDARD_PLAN
            self.bucket = LeakyBucket(payload.get("maximum", maximum), payload.get("restore", restore))
            return self.bucket.status()
        if action == "inject_user_errors":
            message = payload.get("message") or "Invalid value"
            self.store.inject_user_errors(payload.get("owner_ids") or [], message)
            return {"owners": len(self.store.injected_errors)}
        if action == "customer":
            customer = self.store.customer_by_gid(payload.get("id"))
            if customer is None:
                return None
            metafields = {f"{m['namespace']}.{m['key']}": {"value": m["value"], "type": m["type"]}
                          for m in self.store.metafields_of(customer["_id"])}
            return {**public_view(customer), "metafields": metafields}
        if action == "stats":
            return self.stats()
        raise KeyError(action)

    def stats(self) -> dict:
        return {"customers": self.store.count(), "created": len(self.store.created_ids),
                "changed": len(self.store.changed), "metafields_written": self.store.metafields_written,
                "cost_spent": self.cost_spent, "throttled": self.throttled,
                "requests_served": self.requests_served, "throttle_status": self.bucket.status()}

    def status(self) -> dict:
        return {**super().status(), **self.stats()}
