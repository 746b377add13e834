"""Shopify Admin GraphQL sandbox: ``POST /admin/api/{version}/graphql.json`` over generated customers.

What it models (facts in shared/upstreams/shopify.md): the ``X-Shopify-Access-Token`` check (401 with
Shopify's text), version fall-forward (unknown or retired versions are served as the oldest supported one,
named in ``X-Shopify-API-Version``), a schema subset executed by graphql-core, the calculated query cost
(MAX_COST_EXCEEDED over 1000 points, requested cost debited up front and the unused part refunded),
a leaky bucket per shop with THROTTLED as HTTP 200, ``extensions.cost`` on every executed request, and
stateful ``metafieldsSet`` / ``customerCreate`` / ``customerUpdate``. Data lives in ``sandbox_store``.

Also: ``customersCount``, ``shop``, bulk query operations run for real (``sandbox_bulk``), the
client-credentials grant ``POST /admin/oauth/access_token`` issuing tokens that expire after
``--shopify-token-ttl`` seconds (then refused with the same 401 as an unknown token), and the
commit-then-fail fault ``drop_after_commit_next`` (the mutation is applied, the connection dropped).

Test hooks (``POST /_sandbox/shopify/<action>``): ``expected`` {query} → matching legacy ids; ``plan``
{maximum, restore} → bucket size; ``inject_user_errors`` {owner_ids, message}; ``customer`` {id};
``stats``; ``bulk`` {rows_per_second, url_ttl_seconds, fail: {error_code, after_objects, partial, times}};
``bulk_expire_results``; ``tokens`` {ttl, expire_all}; ``set_level`` {inventory_item_id, location_id,
available}; ``GET /_sandbox/shopify/inventory`` (every stocked variant × location: the catalog's truth).

The catalog (``sandbox_catalog.ShopifyCatalog``, generated from the catalog population the Nhanh sandbox shares)
serves ``products``, ``productVariants``, ``locations`` and their nodes, also through bulk operations.
"""

from __future__ import annotations

import re
import secrets
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

from . import sandbox_inventory
from .sandbox_bulk import BULK_GID, DEFAULT_ROWS_PER_SECOND, BulkFault, BulkRunner
from .sandbox_catalog import ShopifyCatalog
from .sandbox_schema import MAX_QUERY_COST, CostModel, make_schema
from .sandbox_store import CustomerStore, public_view

SANDBOX_ACCESS_TOKEN = "shpat_sandbox_0123456789abcdef"  # noqa: S105 - public by design: sandbox only
# A Dev Dashboard app's credentials (client-credentials grant); public by design: sandbox only.
SANDBOX_CLIENT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
SANDBOX_CLIENT_SECRET = "shpss_sandbox_fedcba9876543210"  # noqa: S105
SANDBOX_SCOPES = "read_customers,write_customers,read_products,write_products,read_inventory,write_inventory"
SANDBOX_SHOP = {"id": "gid://shopify/Shop/68000000001", "name": "ShopBridge Sandbox",
                "myshopifyDomain": "shopbridge-sandbox.myshopify.com"}
TOKEN_PATH = "/admin/oauth/access_token"  # noqa: S105 - a URL path, not a secret
BULK_RESULT_PATH = re.compile(r"^/_bulk/(\d+)\.jsonl$")
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
    app: ShopifySandbox | None = None
    version: str = ""  # the API version serving this request
    url_base: str = ""  # http://host:port/shopify as the client reached it (for bulk result URLs)
    bulk_page: dict | None = None  # set while a bulk operation walks the root connection
    bulk_connection: dict | None = None  # the root connection page just served to a bulk operation


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
    bulk = info.context.bulk_page
    if bulk is not None and info.path.prev is None:  # a bulk operation pages the root connection itself
        args = {**args, **bulk}
    connection, warnings = info.context.store.page(
        first=args.get("first"), after=args.get("after"), last=args.get("last"), before=args.get("before"),
        reverse=args.get("reverse") or False, sort_key=args.get("sortKey") or "ID", query=args.get("query"),
    )
    if bulk is not None:
        info.context.bulk_connection = connection
    if warnings:
        info.context.search.append({"path": list(info.path.as_list()), "query": args.get("query"),
                                    "warnings": warnings})
    return connection


def _catalog_root(method_name: str):
    """A resolver for a root catalog connection (products, productVariants, locations) that a bulk operation
    can page like ``customers``."""

    def resolve(root, info, **args):
        bulk = info.context.bulk_page
        if bulk is not None and info.path.prev is None:
            args = {**args, **bulk}
        extra = {"include_inactive": args.get("includeInactive") or False} if method_name == "locations_page" else {}
        connection, warnings = getattr(info.context.app.catalog, method_name)(
            first=args.get("first"), after=args.get("after"), last=args.get("last"), before=args.get("before"),
            reverse=args.get("reverse") or False, sort_key=args.get("sortKey") or "ID", query=args.get("query"),
            **extra)
        if bulk is not None and info.path.prev is None:
            info.context.bulk_connection = connection
        if warnings:
            info.context.search.append({"path": list(info.path.as_list()), "query": args.get("query"),
                                        "warnings": warnings})
        return connection

    return resolve


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
    query["customersCount"].resolve = lambda root, info, query=None: {
        "count": info.context.store.count_matching(query), "precision": "EXACT"}
    query["shop"].resolve = lambda root, info: SANDBOX_SHOP
    query["currentBulkOperation"].resolve = lambda root, info, type="QUERY": _bulk(info).view(
        _bulk(info).current(type))
    query["bulkOperation"].resolve = lambda root, info, id: _bulk(info).view(_bulk(info).get(id))
    query["node"].resolve = _resolve_node
    for name, method in (("products", "products_page"), ("productVariants", "variants_page"),
                         ("locations", "locations_page")):
        query[name].resolve = _catalog_root(method)
    for name in ("product", "productVariant", "location", "inventoryItem"):
        query[name].resolve = lambda root, info, id=None: info.context.app.catalog.by_gid(id) if id else None
    query["productsCount"].resolve = lambda root, info, query=None: {
        "count": len(info.context.app.catalog.products_page(first=None, query=query, all_rows=True)[0]["nodes"]),
        "precision": "EXACT"}
    mutation["bulkOperationRunQuery"].resolve = lambda root, info, query: _bulk(info).run_query(
        query, version=info.context.version, url_base=info.context.url_base)
    mutation["bulkOperationCancel"].resolve = lambda root, info, id: _bulk(info).cancel(id)
    sandbox_inventory.install(schema)  # inventorySetQuantities, productVariantsBulkUpdate
    return schema


def _bulk(info) -> BulkRunner:
    return info.context.app.bulk


def _resolve_node(root, info, id):
    if id.startswith(BULK_GID):
        return _bulk(info).view(_bulk(info).get(id))
    if id == SANDBOX_SHOP["id"]:
        return SANDBOX_SHOP
    return info.context.store.customer_by_gid(id) or info.context.app.catalog.by_gid(id)


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
        from integrations.nhanh.sandbox import catalog_for

        self.catalog = ShopifyCatalog(catalog_for(options, population))
        self.inventory = sandbox_inventory.InventoryWrites(self.catalog)
        self.bucket = LeakyBucket(*STANDARD_PLAN)
        self.throttled = 0
        self.cost_spent = 0
        self._counters_lock = threading.Lock()  # requests are served on many threads
        self.token_ttl = float(getattr(options, "shopify_token_ttl", 86_400))
        self.tokens: dict[str, float] = {}  # issued access token → expiry (time.monotonic())
        self.tokens_issued = 0
        self.bulk = BulkRunner(self.schema, lambda: RequestContext(self.store, app=self),
                               {"is_awaitable": _never_awaitable, **EXECUTOR_OPTIONS},
                               rows_per_second=getattr(options, "shopify_bulk_rows_per_second",
                                                       DEFAULT_ROWS_PER_SECOND))

    # --- HTTP -----------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse | None:
        if request.path == TOKEN_PATH and request.method == "POST":
            return self.grant_token(request)
        result = BULK_RESULT_PATH.match(request.path)
        if result and request.method == "GET":
            status, body, content_type = self.bulk.download(result.group(1), request.arg("Expires"),
                                                            request.arg("Signature"))
            return SandboxResponse(status, body, content_type=content_type)
        match = GRAPHQL_PATH.match(request.path)
        if not match or request.method != "POST":
            return SandboxResponse(404, {"errors": "Not Found"})
        if self.faults.auth_reject or not self.token_valid(request.header("X-Shopify-Access-Token")):
            # Expired tokens get exactly what unknown ones get (Shopify says no more than that).
            return SandboxResponse(401, {"errors": AUTH_FAILURE_TEXT})
        version = match.group(1)
        served = version if version in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        headers = {"X-Shopify-API-Version": served}
        body = self._read_body(request)
        if body is None:
            return SandboxResponse(400, {"errors": {"query": "Required parameter missing or invalid"}},
                                   headers)
        query, variables, operation_name = body
        context = RequestContext(self.store, app=self, version=served,
                                 url_base=f"http://{request.header('Host') or '127.0.0.1'}/{self.name}")
        status, payload = self.execute(query, variables, operation_name, context)
        if self.faults.drop_after_commit_next > 0 and _is_mutation(query, operation_name):
            # Commit-then-fail: the write is applied, then the connection drops before the answer.
            self.faults.drop_after_commit_next -= 1
            return None
        throttled = any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in payload.get("errors") or ()
                        if isinstance(e, dict))
        return SandboxResponse(status, payload, headers, rate_limited=throttled)

    # --- client-credentials grant ---------------------------------------------------------------------
    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        if token == SANDBOX_ACCESS_TOKEN:  # a legacy custom-app token: never expires
            return True
        expires = self.tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def grant_token(self, request: SandboxRequest) -> SandboxResponse:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                raw = request.json() or {}
            except ValueError:
                raw = {}
            params = {k: str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        else:
            params = {k: v[0] for k, v in request.form().items()}
        if params.get("grant_type") != "client_credentials":
            return SandboxResponse(400, {"error": "unsupported_grant_type",
                                         "error_description": "The grant type is not supported."})
        if params.get("client_id") != SANDBOX_CLIENT_ID or params.get("client_secret") != SANDBOX_CLIENT_SECRET:
            return SandboxResponse(400, {"error": "invalid_client",
                                         "error_description": "Client authentication failed: unknown client "
                                                              "or wrong client secret."})
        token = "shpat_" + secrets.token_hex(16)
        with self._counters_lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
            self.tokens_issued += 1
        return SandboxResponse(200, {"access_token": token, "scope": SANDBOX_SCOPES,
                                     "expires_in": int(self.token_ttl)})

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

    def execute(self, query: str, variables: dict, operation_name: str | None,
                context: RequestContext | None = None) -> tuple[int, dict]:
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

        context = context or RequestContext(self.store, app=self)
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
        return SandboxResponse(429, {"errors": text}, {"Retry-After": f"{max(retry_after, 0):.1f}"},
                               rate_limited=True)

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
        if action == "inventory":  # GET /_sandbox/shopify/inventory: [{"sku", "location_id", "available"}]
            return SandboxResponse(200, self.catalog.inventory_truth())
        if action == "level":  # {inventory_item_id, location_id} → available (None: not stocked there)
            return self.catalog.level(int(payload["inventory_item_id"]), int(payload["location_id"]))
        if action == "inventory_user_errors":
            # {inventory_item_ids, code, message}: inventorySetQuantities refuses these items (empty list: none)
            self.inventory.injected = {int(i): {"code": payload.get("code"), "message": payload.get("message") or
                                                "Invalid inventory item"}
                                       for i in payload.get("inventory_item_ids") or ()}
            return {"items": len(self.inventory.injected)}
        if action == "set_level":  # {inventory_item_id, location_id, available}: a sale made in Shopify
            try:
                return {"previous": self.catalog.set_level(int(payload["inventory_item_id"]),
                                                           int(payload["location_id"]), int(payload["available"]))}
            except KeyError as exc:
                raise ValueError(str(exc)) from None
        if action == "bulk":
            # {rows_per_second, url_ttl_seconds, fail: {error_code, after_objects, partial, times}}
            if "rows_per_second" in payload:
                self.bulk.rows_per_second = float(payload["rows_per_second"])
            if "url_ttl_seconds" in payload:
                self.bulk.url_ttl_seconds = float(payload["url_ttl_seconds"])
            if payload.get("fail"):
                self.bulk.faults.append(BulkFault(**payload["fail"]))
            return self.bulk_status()
        if action == "bulk_expire_results":
            return self.bulk.expire_results()
        if action == "tokens":
            # {ttl}: lifetime of tokens issued from now on; {expire_all: true}: every issued token expires now
            if "ttl" in payload:
                self.token_ttl = float(payload["ttl"])
            if payload.get("expire_all"):
                with self._counters_lock:
                    self.tokens = dict.fromkeys(self.tokens, 0.0)
            return {"issued": self.tokens_issued, "ttl": self.token_ttl}
        raise KeyError(action)

    def bulk_status(self) -> dict:
        return {"rows_per_second": self.bulk.rows_per_second, "url_ttl_seconds": self.bulk.url_ttl_seconds,
                "started": self.bulk.started,
                "operations": [self.bulk.view(op) for op in self.bulk.ops.values()]}

    def stats(self) -> dict:
        return {"customers": self.store.count(), "created": len(self.store.created_ids),
                "products": len(self.catalog.products), "variants": len(self.catalog.variants),
                "level_writes": self.catalog.level_writes, "price_writes": self.catalog.price_writes,
                "inventory_calls_applied": self.inventory.calls_applied, "inventory_replays": self.inventory.replays,
                "inventory_stale": self.inventory.stale,
                "changed": len(self.store.changed), "metafields_written": self.store.metafields_written,
                "cost_spent": self.cost_spent, "throttled": self.throttled,
                "requests_served": self.requests_served, "rate_limited": self.rate_limited,
                "throttle_status": self.bucket.status(),
                "tokens_issued": self.tokens_issued, "bulk_operations_started": self.bulk.started}

    def status(self) -> dict:
        return {**super().status(), **self.stats()}


def _is_mutation(query: str, operation_name: str | None) -> bool:
    prepared = _prepare(query)
    if prepared.document is None:
        return False
    operation = get_operation_ast(prepared.document, operation_name)
    return operation is not None and operation.operation == OperationType.MUTATION
