"""Nhanh and Shopify catalog rows → model fields and child rows. A row that cannot be read raises MalformedRow
(jobs.ingest) with the reason staff see.

SKUs are kept as typed (stray spaces and case included: staff recognise them); ``sku_key`` holds the form
auto-match compares (products.models.sku_key)."""

from __future__ import annotations

from django.utils import timezone

from jobs.ingest import MalformedRow, decimal, int_key, integer, iso_time, text, unix_time

from ..models import NhanhProductStatus, sku_key

STOCK_FIELDS = ("remain", "available", "holding", "shipping", "damaged", "transfering")


def as_typed(value, limit: int) -> str:
    """A string field kept exactly as the upstream wrote it (no trimming), cut to the column's length."""
    return "" if value is None else str(value)[:limit]


def gid_id(value) -> int | None:
    """``gid://shopify/Location/123`` (or ``…/123?x=y``, or a bare id) → 123."""
    if value is None:
        return None
    return int_key(str(value).split("?", 1)[0].rsplit("/", 1)[-1])


def gid_type(value) -> str:
    parts = str(value or "").split("/")
    return parts[3] if len(parts) > 4 and parts[0] == "gid:" else ""


# --- Nhanh ---------------------------------------------------------------------------------------------
def nhanh_product_key(raw) -> int | None:
    return int_key(raw.get("id")) if isinstance(raw, dict) else None


def nhanh_inventory_key(raw) -> int | None:
    return int_key(raw.get("productId")) if isinstance(raw, dict) else None


def nhanh_depots(inventory) -> list[dict]:
    """Stock rows per depot from an ``inventory`` object: v3 ``depots`` is an array with ``id``; v2 (and some
    webhooks) key it by depot id. Quantities are doubles (or numbers as strings)."""
    if inventory in (None, "", []):
        return []
    if not isinstance(inventory, dict):
        raise MalformedRow("inventory is not an object")
    depots = inventory.get("depots") or []
    if isinstance(depots, dict):
        depots = [{"id": key, **value} for key, value in depots.items() if isinstance(value, dict)]
    if not isinstance(depots, list):
        raise MalformedRow("inventory.depots is neither a list nor an object")
    rows, seen = [], set()
    for depot in depots:
        if not isinstance(depot, dict):
            raise MalformedRow("inventory.depots holds a non-object")
        depot_id = integer(depot.get("id", depot.get("depotId")), "depot id", required=True)
        if depot_id in seen:
            continue
        seen.add(depot_id)
        rows.append({"depot_id": depot_id, **{name: decimal(depot.get(name), f"depot {depot_id} {name}")
                                             for name in STOCK_FIELDS}})
    return rows


def nhanh_product(raw: dict) -> tuple[dict, list[dict]]:
    """(fields for NhanhProduct, its NhanhStock rows) from a v3 product/list record."""
    if not isinstance(raw, dict):
        raise MalformedRow(f"row is not an object: {str(raw)[:60]!r}")
    status = integer(raw.get("status"), "status")
    if status is not None and status not in NhanhProductStatus.values:
        raise MalformedRow(f"status {status} is not 1–4")
    parent = integer(raw.get("parentId"), "parentId")
    prices = raw.get("prices") or {}
    if not isinstance(prices, dict):
        raise MalformedRow("prices is not an object")
    code = as_typed(raw.get("code"), 255)

    def money(name):
        value = prices.get(name)
        return None if value in (None, "") else decimal(value, f"prices.{name}")

    fields = {
        "nhanh_id": integer(raw.get("id"), "id", required=True),
        "parent_id": parent if parent and parent > 0 else None,
        "code": code,
        "sku_key": sku_key(code)[:255],
        "barcode": text(raw.get("barcode"), 255),
        "name": text(raw.get("name"), 500),
        "status": status,
        "retail_price": money("retail"),
        "old_price": money("old"),
        "wholesale_price": money("wholesale"),
        "upstream_updated_at": unix_time(raw.get("updatedAt"), "updatedAt"),
        "stock_updated_at": timezone.now(),
    }
    return fields, nhanh_depots(raw.get("inventory"))


# --- Shopify -------------------------------------------------------------------------------------------
def shopify_key(node) -> int | None:
    if not isinstance(node, dict):
        return None
    return gid_id(node.get("legacyResourceId") or node.get("id"))


def shopify_location(node: dict) -> tuple[dict, list[dict]]:
    if not isinstance(node, dict):
        raise MalformedRow(f"location is not an object: {str(node)[:60]!r}")
    return {
        "shopify_id": integer(gid_id(node.get("legacyResourceId") or node.get("id")), "location id", required=True),
        "name": text(node.get("name"), 255),
        "is_active": bool(node.get("isActive", True)),
        "fulfills_online_orders": bool(node.get("fulfillsOnlineOrders", True)),
    }, []


def shopify_product(node: dict) -> tuple[dict, list[dict]]:
    if not isinstance(node, dict):
        raise MalformedRow(f"product is not an object: {str(node)[:60]!r}")
    return {
        "shopify_id": integer(gid_id(node.get("legacyResourceId") or node.get("id")), "product id", required=True),
        "title": text(node.get("title"), 500),
        "handle": text(node.get("handle"), 255),
        "status": text(node.get("status"), 20),
        "upstream_updated_at": iso_time(node.get("updatedAt"), "updatedAt"),
    }, []


def shopify_levels(levels) -> list[dict]:
    """ShopifyInventoryLevel rows (location, available) from inventory level nodes."""
    if not isinstance(levels, list):
        raise MalformedRow("inventory levels are not a list")
    now, rows, seen = timezone.now(), [], set()
    for level in levels:
        if not isinstance(level, dict):
            raise MalformedRow("an inventory level is not an object")
        location_id = gid_id((level.get("location") or {}).get("id"))
        if location_id is None:
            raise MalformedRow("an inventory level has no location id")
        quantities = level.get("quantities") or []
        available = next((q.get("quantity") for q in quantities if isinstance(q, dict)
                          and q.get("name") == "available"), None)
        if location_id not in seen:
            seen.add(location_id)
            rows.append({"location_id": location_id, "available": integer(available, "available"), "read_at": now})
    return rows


def shopify_variant(node: dict) -> tuple[dict, list[dict]]:
    """(fields for ShopifyVariant, its levels) from a variant node whose ``__children`` are its levels and whose
    ``__product`` is its product's id (see pulls.variant_rows)."""
    if not isinstance(node, dict):
        raise MalformedRow(f"variant is not an object: {str(node)[:60]!r}")
    sku = as_typed(node.get("sku"), 255)
    compare_at = node.get("compareAtPrice")
    item_id = gid_id((node.get("inventoryItem") or {}).get("id"))
    return {
        "shopify_id": integer(gid_id(node.get("legacyResourceId") or node.get("id")), "variant id", required=True),
        "product_id": integer(node.get("__product"), "product id", required=True),
        "title": text(node.get("title"), 500),
        "sku": sku,
        "sku_key": sku_key(sku)[:255],
        "barcode": text(node.get("barcode"), 255),
        "price": None if node.get("price") in (None, "") else decimal(node.get("price"), "price"),
        "compare_at_price": None if compare_at in (None, "") else decimal(compare_at, "compareAtPrice"),
        "inventory_item_id": item_id,
        "inventory_quantity": integer(node.get("inventoryQuantity"), "inventoryQuantity"),
        "upstream_updated_at": iso_time(node.get("updatedAt"), "updatedAt"),
    }, shopify_levels(node.get("__children") or [])
