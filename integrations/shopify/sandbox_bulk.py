"""Bulk query operations of the Shopify sandbox, run for real (facts: shared/upstreams/shopify.md §10).

``bulkOperationRunQuery(query:)`` validates the query as Shopify does (a valid document, at least one
connection, at most 5, nested at most 2 deep, the parent of a nested connection selecting ``id``), then a
background thread walks the root connection page by page through the same schema and resolvers the paged
API uses, writing one JSONL line per object: nested connection items become lines of their own carrying
``__parentId`` (written after the page of parents they belong to, so not always next to their parent, as
the docs allow). The operation goes CREATED → RUNNING → COMPLETED with a growing ``objectCount`` at a
configurable speed (objects per second), or FAILED (injected: errorCode and, optionally, a
``partialDataUrl`` with what was written), or CANCELING → CANCELED. The result is served at a signed URL
that expires (GCS-style 400 ``ExpiredToken`` after it does; the operation then reads EXPIRED). At most
5 bulk queries run at once from API 2026-01 on, 1 before (``OPERATION_IN_PROGRESS`` otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from graphql import (
    FieldNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_named_type,
    parse,
    validate,
)

BULK_GID = "gid://shopify/BulkOperation/"
BULK_BASE_ID = 4_100_000_000
URL_TTL_SECONDS = 7 * 86_400  # url / partialDataUrl expire 7 days after the operation ends
MAX_CONNECTIONS = 5
MAX_CONNECTION_DEPTH = 2
ACTIVE = ("CREATED", "RUNNING", "CANCELING")
# Unconfirmed server-side speed; the bench sets a documented figure with --shopify-bulk-rows-per-second.
DEFAULT_ROWS_PER_SECOND = 2000.0
CREATED_FOR_SECONDS = 0.1  # an operation is queued (CREATED) briefly before it runs
# Root connections whose resolvers let a bulk operation page them (RequestContext.bulk_page).
BULK_ROOTS = ("customers", "products", "productVariants", "locations")


def concurrency_limit(version: str) -> int:
    """Bulk queries one app may run at once on one shop: 5 from 2026-01, 1 before."""
    return 5 if version >= "2026-01" else 1


def iso_now() -> str:
    return datetime.now(UTC).isoformat()[:19] + "Z"


@dataclass
class BulkFault:
    """An injected failure for the next operation(s): FAILED with ``error_code`` once ``after_objects``
    objects were written; ``partial`` offers what exists at ``partialDataUrl``."""

    error_code: str = "INTERNAL_SERVER_ERROR"
    after_objects: int = 0
    partial: bool = False
    times: int = 1


@dataclass
class BulkOperation:
    number: int
    query: str
    status: str = "CREATED"
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    created_at: str = field(default_factory=iso_now)
    completed_at: str | None = None
    path: str = ""
    url_base: str = ""
    expires_at: float | None = None  # wall clock; when the result URL stops working
    has_result: bool = False  # url (COMPLETED) or partialDataUrl (FAILED with partial data)
    cancel_requested: bool = False
    fault: BulkFault | None = None

    @property
    def gid(self) -> str:
        return f"{BULK_GID}{self.number}"


class BulkRunner:
    def __init__(self, schema, make_context, executor_options: dict, *, rows_per_second: float):
        self.schema = schema
        self.make_context = make_context  # () → a fresh RequestContext
        self.executor_options = executor_options
        self.rows_per_second = rows_per_second  # objects written per second; 0 = as fast as possible
        self.url_ttl_seconds = float(URL_TTL_SECONDS)
        self.faults: list[BulkFault] = []
        self.ops: dict[int, BulkOperation] = {}
        self.started = 0
        self._next = BULK_BASE_ID
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="shopify-sandbox-bulk-")
        self._key = secrets.token_bytes(16)
        self.clock_skew = 0.0  # seconds the result URLs' clock runs ahead (a test jumps "a week later")

    # --- the API ----------------------------------------------------------------------------------
    def run_query(self, query: str, *, version: str, url_base: str) -> dict:
        problem = self._check(query)
        if problem:
            return {"bulkOperation": None,
                    "userErrors": [{"code": "INVALID", "field": ["query"], "message": problem}]}
        with self._lock:
            active = [op for op in self.ops.values() if op.status in ACTIVE]
            if len(active) >= concurrency_limit(version):
                latest = max(active, key=lambda op: op.number)
                return {"bulkOperation": None, "userErrors": [{
                    "code": "OPERATION_IN_PROGRESS", "field": None,
                    "message": f"A bulk query operation for this app and shop is already in progress: "
                               f"{latest.gid}.",
                }]}
            self._next += 1
            op = BulkOperation(self._next, query, url_base=url_base)
            op.path = os.path.join(self._dir.name, f"{op.number}.jsonl")
            if self.faults:
                op.fault = self.faults[0]
                op.fault.times -= 1
                if op.fault.times <= 0:
                    self.faults.pop(0)
            self.ops[op.number] = op
            self.started += 1
        threading.Thread(target=self._run, args=(op,), name=f"bulk-{op.number}", daemon=True).start()
        return {"bulkOperation": self.view(op), "userErrors": []}

    def cancel(self, gid: str) -> dict:
        op = self.get(gid)
        if op is None:
            missing = {"field": ["id"], "message": "Bulk operation does not exist"}
            return {"bulkOperation": None, "userErrors": [missing]}
        with self._lock:
            if op.status not in ACTIVE:
                message = f"A bulk operation cannot be canceled when it is {op.status.lower()}"
                return {"bulkOperation": self.view(op), "userErrors": [{"field": None, "message": message}]}
            op.cancel_requested = True
            op.status = "CANCELING"
        return {"bulkOperation": self.view(op), "userErrors": []}

    def get(self, gid: str | None) -> BulkOperation | None:
        if not gid or not gid.startswith(BULK_GID) or not gid[len(BULK_GID):].isdigit():
            return None
        return self.ops.get(int(gid[len(BULK_GID):]))

    def current(self, type_: str = "QUERY") -> BulkOperation | None:
        if type_ != "QUERY" or not self.ops:
            return None
        return self.ops[max(self.ops)]

    def view(self, op: BulkOperation | None) -> dict | None:
        """The BulkOperation object as the API shows it."""
        if op is None:
            return None
        expired = op.expires_at is not None and self.now() > op.expires_at
        status = "EXPIRED" if expired and op.status in ("COMPLETED", "FAILED") else op.status
        url = self._signed_url(op) if op.has_result and op.status == "COMPLETED" else None
        partial = self._signed_url(op) if op.has_result and op.status == "FAILED" else None
        return {
            "id": op.gid, "status": status, "errorCode": op.error_code, "type": "QUERY",
            "objectCount": str(op.object_count), "rootObjectCount": str(op.root_object_count),
            "fileSize": str(op.file_size) if op.file_size is not None and url else None,
            "url": url, "partialDataUrl": partial, "query": op.query, "createdAt": op.created_at,
            "completedAt": op.completed_at,
        }

    # --- the result file ----------------------------------------------------------------------------
    def _signature(self, op: BulkOperation) -> str:
        message = f"{op.number}:{int(op.expires_at or 0)}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _signed_url(self, op: BulkOperation) -> str:
        return (f"{op.url_base}/_bulk/{op.number}.jsonl?GoogleAccessId=sandbox&Expires={int(op.expires_at or 0)}"
                f"&Signature={self._signature(op)}")

    def download(self, number: str, expires: str | None, signature: str | None) -> tuple[int, bytes, str]:
        """(status, body, content type) for a GET of a result URL."""
        op = self.ops.get(int(number)) if number.isdigit() else None
        if op is None or not op.has_result or not signature or not expires or not expires.isdigit() \
                or int(expires) != int(op.expires_at or 0) \
                or not hmac.compare_digest(signature, self._signature(op)):
            return 403, _gcs_error("SignatureDoesNotMatch", "The request signature we calculated does not "
                                   "match the signature you provided."), "application/xml; charset=UTF-8"
        if self.now() > int(expires):
            stamp = datetime.fromtimestamp(int(expires), UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            return 400, _gcs_error("ExpiredToken", "The provided token has expired.",
                                   f"Request signature expired at: {stamp}"), "application/xml; charset=UTF-8"
        with open(op.path, "rb") as f:
            return 200, f.read(), "application/jsonl"

    def now(self) -> float:
        return time.time() + self.clock_skew

    def expire_results(self) -> int:
        """Test hook: move the clock past every result URL's expiry (as if a week had gone by)."""
        with self._lock:
            ends = [op.expires_at for op in self.ops.values() if op.expires_at is not None]
            if ends:
                self.clock_skew = max(self.clock_skew, max(ends) - time.time() + 1)
        return len(ends)

    # --- validation -----------------------------------------------------------------------------------
    def _check(self, query: str) -> str | None:
        try:
            document = parse(query)
        except GraphQLError as exc:
            return f"Invalid bulk query: {exc.message}"
        errors = validate(self.schema, document)
        if errors:
            return f"Invalid bulk query: {errors[0].message}"
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
            return "Invalid bulk query: a bulk query must contain exactly one query operation."
        if operations[0].variable_definitions:
            return "Invalid bulk query: bulk queries cannot take variables."
        connections: list[int] = []
        problem = self._walk(self.schema.query_type, operations[0].selection_set, 0, connections)
        if problem:
            return problem
        if not connections:
            return "Bulk queries must contain at least one connection."
        roots = operations[0].selection_set.selections
        if len(roots) != 1 or not isinstance(roots[0], FieldNode) or roots[0].name.value not in BULK_ROOTS:
            return ("Invalid bulk query: the sandbox runs bulk queries over one root field, one of "
                    f"{', '.join(BULK_ROOTS)}.")
        if len(connections) > MAX_CONNECTIONS:
            return f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
        # The root connection is not nested: products > variants > inventoryLevels nests two levels deep.
        if max(connections) - 1 > MAX_CONNECTION_DEPTH:
            return f"Bulk queries cannot contain connections with a nesting depth greater than {MAX_CONNECTION_DEPTH}."
        return None

    def _walk(self, parent_type, selection_set, depth: int, connections: list[int],
              parent_fields: frozenset = frozenset()) -> str | None:
        """Record the depth of every connection below ``selection_set``; a message if a rule is broken."""
        if selection_set is None:
            return None
        for selection in selection_set.selections:
            if isinstance(selection, InlineFragmentNode):
                narrowed = (self.schema.type_map[selection.type_condition.name.value]
                            if selection.type_condition else parent_type)
                if problem := self._walk(narrowed, selection.selection_set, depth, connections, parent_fields):
                    return problem
                continue
            if not isinstance(selection, FieldNode) or selection.name.value.startswith("__"):
                continue
            field_def = parent_type.fields[selection.name.value]
            named = get_named_type(field_def.type)
            if not named.name.endswith("Connection"):
                if hasattr(named, "fields") and (
                        problem := self._walk(named, selection.selection_set, depth, connections, parent_fields)):
                    return problem
                continue
            connections.append(depth + 1)
            if depth > 0 and "id" not in parent_fields:
                return ("The parent 'node' field for a nested connection must select the 'id' field without an "
                        "alias and must be of type 'ID!'.")
            for child in selection.selection_set.selections:
                if not isinstance(child, FieldNode):
                    continue
                if child.name.value == "nodes":
                    item_type, item_selection = get_named_type(named.fields["nodes"].type), child.selection_set
                elif child.name.value == "edges":
                    edge_type = get_named_type(named.fields["edges"].type)
                    node = next((c for c in child.selection_set.selections
                                 if isinstance(c, FieldNode) and c.name.value == "node"), None)
                    if node is None:
                        continue
                    item_type, item_selection = get_named_type(edge_type.fields["node"].type), node.selection_set
                else:
                    continue
                own = frozenset(c.name.value for c in item_selection.selections
                                if isinstance(c, FieldNode) and c.alias is None)
                if problem := self._walk(item_type, item_selection, depth + 1, connections, own):
                    return problem
        return None

    # --- running ----------------------------------------------------------------------------------------
    def _run(self, op: BulkOperation) -> None:
        try:
            self._execute(op)
        except Exception as exc:  # a sandbox bug shows as a failed operation, not a thread dying silently
            with self._lock:
                op.status, op.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
                op.completed_at = iso_now()
            raise exc

    def _execute(self, op: BulkOperation) -> None:
        document = parse(op.query)
        root = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode)).selection_set
        root_name = root.selections[0].alias.value if root.selections[0].alias else root.selections[0].name.value
        time.sleep(CREATED_FOR_SECONDS)
        with self._lock:
            if op.cancel_requested:
                op.status, op.completed_at = "CANCELED", iso_now()
                return
            op.status = "RUNNING"
        started = time.monotonic()
        after = None
        with open(op.path, "w", encoding="utf-8") as out:
            while True:
                speed = self.rows_per_second
                chunk = 250 if not speed else max(1, min(250, int(speed / 5)))
                context = self.make_context()
                context.bulk_page = {"first": chunk, "after": after}
                result = execute(self.schema, document, context_value=context, **self.executor_options)
                if result.errors:
                    raise RuntimeError(f"bulk execution failed: {result.errors[0].message}")
                connection = result.data[root_name]
                nodes = connection.get("nodes")
                if nodes is None:
                    nodes = [edge["node"] for edge in connection.get("edges") or []]
                parents, children = [], []
                for node in nodes:
                    parent, below = _split(node, None)
                    parents.append(parent)
                    children.extend(below)
                lines = parents + children
                out.write("".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
                                  for line in lines))
                out.flush()
                fault = op.fault
                with self._lock:
                    op.object_count += len(lines)
                    op.root_object_count += len(parents)
                    if fault and op.object_count >= fault.after_objects:
                        self._finish(op, "FAILED", error_code=fault.error_code, result=fault.partial)
                        return
                    if op.cancel_requested:
                        self._finish(op, "CANCELED", result=False)
                        return
                page_info = context.bulk_connection["pageInfo"]
                if speed:
                    ahead = op.object_count / speed - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                if not page_info["hasNextPage"]:
                    break
                after = page_info["endCursor"]
        with self._lock:
            if op.fault:  # the fault's threshold was never reached: fail at the end
                self._finish(op, "FAILED", error_code=op.fault.error_code, result=op.fault.partial)
            else:
                self._finish(op, "COMPLETED", result=True)

    def _finish(self, op: BulkOperation, status: str, *, error_code: str | None = None, result: bool) -> None:
        """Call under the lock."""
        op.status, op.error_code, op.completed_at = status, error_code, iso_now()
        op.has_result = result and op.object_count > 0  # an empty result has url null
        op.file_size = os.path.getsize(op.path) if op.has_result else None
        op.expires_at = self.now() + self.url_ttl_seconds if op.has_result else None


def _is_connection(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("nodes", value.get("edges")), list)


def _strip(obj: dict, nested: list[list]) -> dict:
    """``obj`` without its connections (collected into ``nested``), looking inside plain nested objects too:
    a variant's ``inventoryItem { inventoryLevels }`` items become lines whose parent is the variant."""
    own: dict = {}
    for key, value in obj.items():
        if _is_connection(value):
            nested.append(value["nodes"] if "nodes" in value else [edge.get("node") for edge in value["edges"]])
        elif isinstance(value, dict):
            own[key] = _strip(value, nested)
        else:
            own[key] = value
    return own


def _split(node: dict, parent_id: str | None) -> tuple[dict, list[dict]]:
    """One object's own line (nested connections removed) and the lines of its connection items."""
    nested: list[list] = []
    own = _strip(node, nested)
    if parent_id is not None:
        own["__parentId"] = parent_id
    below: list[dict] = []
    for items in nested:
        for item in items:
            line, deeper = _split(item, node.get("id"))
            below.append(line)
            below.extend(deeper)
    return own, below


def _gcs_error(code: str, message: str, details: str = "") -> bytes:
    extra = f"<Details>{details}</Details>" if details else ""
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
            f"{extra}</Error>").encode()
