"""The Shopify sandbox's catalog (facts: shared/upstreams/shopify.md §7): products, variants (price,
compare-at price, SKU, inventory item), locations and the ``available`` quantity per (inventory item,
location), generated from the shared catalog population and changed by mutations, behind one lock.

Read side served by the GraphQL schema (``products``, ``productVariants``, ``locations``, ``product``,
``productVariant``, ``location``, ``inventoryItem``, ``node``; nested ``variants``, ``inventoryLevels``,
``inventoryLevel``) and by bulk operations. Views are built per request from the state, so a page served while
a mutation runs sees either the old or the new value, never half of it.

The write side's primitives (``set_level``, ``set_variant_prices``) are what the stock/price mutations
(``inventorySetQuantities``, ``productVariantsBulkUpdate``) are built on.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from graphql import GraphQLError

from integrations.sandbox.catalog_population import CatalogPopulation

from .sandbox_search import _Compiler, _interval, _number_span, _time_span, fold, parse
from .sandbox_store import iso

PRODUCT_GID = "gid://shopify/Product/"
VARIANT_GID = "gid://shopify/ProductVariant/"
ITEM_GID = "gid://shopify/InventoryItem/"
LOCATION_GID = "gid://shopify/Location/"
LEVEL_GID = "gid://shopify/InventoryLevel/"
MAX_PAGE_SIZE = 250
QUANTITY_NAMES = ("available", "on_hand", "committed", "incoming", "reserved", "damaged", "safety_stock",
                  "quality_control")


def gid_number(gid: str | None, prefix: str) -> int | None:
    if not isinstance(gid, str) or not gid.startswith(prefix):
        return None
    tail = gid[len(prefix):].split("?", 1)[0]
    return int(tail) if tail.isdigit() else None


def money(amount) -> str | None:
    """Shopify's Money: a decimal string with two places (the amount may be an int, a float, a Decimal or a
    string, as a mutation's input gives it)."""
    return None if amount is None else f"{Decimal(str(amount)):.2f}"


@dataclass
class VariantState:
    id: int
    product_id: int
    inventory_item_id: int
    title: str
    sku: str
    barcode: str
    price: int | float
    compare_at: int | float | None
    created_at: int
    updated_at: int


@dataclass
class ProductState:
    id: int
    title: str
    handle: str
    status: str
    created_at: int
    updated_at: int
    variant_ids: list[int]


# --- search (products / productVariants / locations query:) --------------------------------------------
class _FieldCompiler(_Compiler):
    """The customer search compiler over other fields: ``ranges`` name → (parse value, value of an object),
    ``texts`` name → text of an object (equal, or prefix with a trailing ``*``, case-insensitive)."""

    def __init__(self, ranges: dict, texts: dict, default_text: Callable[[dict], str]):
        super().__init__()
        self.ranges, self.texts, self.default_text = ranges, texts, default_text

    def term(self, term):
        if term.field is None:
            needle = fold(term.value)
            return (lambda o: needle in fold(self.default_text(o))) if needle else None
        if term.field in self.ranges:
            parse_value, value_of = self.ranges[term.field]
            span = parse_value(term.value)
            if span is None:
                self.warn(term, f"Invalid value for {term.field}: {term.value!r}.")
                return None
            low, high = _interval(term.op, *span)
            return lambda o: (low is None or value_of(o) >= low) and (high is None or value_of(o) <= high)
        if term.field in self.texts:
            getter, wanted = self.texts[term.field], term.value
            if wanted == "*":
                return lambda o: any(getter(o))
            if wanted.endswith("*"):
                prefix = fold(wanted[:-1])
                return lambda o: any(fold(t).startswith(prefix) for t in getter(o))
            exact = fold(wanted)
            return lambda o: any(fold(t) == exact for t in getter(o))
        self.warn(term, "Invalid search field for this query.")
        return None


def _compile(query: str | None, ranges: dict, texts: dict, default_text) -> tuple[Callable | None, list[dict]]:
    tree = parse(query)
    compiler = _FieldCompiler(ranges, texts, default_text)
    predicate = compiler.compile(tree) if tree is not None else None
    return predicate, compiler.warnings


class ShopifyCatalog:
    def __init__(self, population: CatalogPopulation):
        self.population = population
        self.lock = threading.RLock()
        self.products: dict[int, ProductState] = {
            p.id: ProductState(p.id, p.title, p.handle, p.status, p.created_at, p.updated_at, list(p.variant_ids))
            for p in population.shopify_products}
        self.variants: dict[int, VariantState] = {
            v.id: VariantState(v.id, v.product_id, v.inventory_item_id, v.title, v.sku, v.barcode, v.price,
                               v.compare_at, v.created_at, v.updated_at)
            for v in population.shopify_variants}
        self.by_item: dict[int, int] = {v.inventory_item_id: v.id for v in self.variants.values()}
        self.locations: dict[int, dict] = {
            loc_id: {"id": loc_id, "name": name, "isActive": True, "fulfillsOnlineOrders": True,
                     "shipsInventory": True, "createdAt": int(population.anchor.timestamp()) - 400 * 86_400}
            for loc_id, name in population.locations}
        self.levels: dict[tuple[int, int], int] = {}  # (inventory item id, location id) → available
        self.level_updated: dict[tuple[int, int], int] = {}
        for v in population.shopify_variants:
            for location_id, available in v.levels.items():
                self.levels[(v.inventory_item_id, location_id)] = available
                self.level_updated[(v.inventory_item_id, location_id)] = v.updated_at
        self.level_writes = 0
        self.price_writes = 0

    # --- primitives for the mutations and tests ---------------------------------------------------------
    def level(self, item_id: int, location_id: int) -> int | None:
        """The ``available`` quantity of an inventory item at a location (None: not stocked there)."""
        with self.lock:
            return self.levels.get((item_id, location_id))

    def set_level(self, item_id: int, location_id: int, qty: int) -> int | None:
        """Set ``available``; returns the previous value (None: was not stocked there; now it is)."""
        with self.lock:
            if item_id not in self.by_item:
                raise KeyError(f"no inventory item {item_id}")
            if location_id not in self.locations:
                raise KeyError(f"no location {location_id}")
            previous = self.levels.get((item_id, location_id))
            self.levels[(item_id, location_id)] = int(qty)
            self.level_updated[(item_id, location_id)] = int(time.time())
            self.level_writes += 1
            return previous

    def variant(self, variant_id: int) -> dict | None:
        """A copy of a variant's state: id, product_id, inventory_item_id, sku, price, compare_at, title…"""
        with self.lock:
            state = self.variants.get(variant_id)
            return None if state is None else dict(state.__dict__)

    def variant_id_of_item(self, item_id: int) -> int | None:
        return self.by_item.get(item_id)

    def set_variant_prices(self, variant_id: int, price, compare_at) -> dict:
        """Set price and compare-at price (None clears compare-at); bumps the variant's and product's updatedAt."""
        with self.lock:
            state = self.variants.get(variant_id)
            if state is None:
                raise KeyError(f"no variant {variant_id}")
            now = int(time.time())
            state.price, state.compare_at, state.updated_at = price, compare_at, now
            self.products[state.product_id].updated_at = now
            self.price_writes += 1
            return dict(state.__dict__)

    def inventory_truth(self) -> list[dict]:
        """``GET /_sandbox/shopify/inventory``: every stocked (variant, location) and its available quantity."""
        with self.lock:
            return [{"sku": self.variants[self.by_item[item_id]].sku, "variant_id": self.by_item[item_id],
                     "inventory_item_id": item_id, "location_id": location_id, "available": available}
                    for (item_id, location_id), available in sorted(self.levels.items())]

    # --- views (what GraphQL serves) -----------------------------------------------------------------------
    def product_view(self, product_id: int) -> dict | None:
        state = self.products.get(product_id)
        if state is None:
            return None
        total = sum(self.levels.get((self.variants[v].inventory_item_id, loc), 0) or 0
                    for v in state.variant_ids for loc in self.locations)

        def variants(info, first=None, after=None, last=None, before=None, reverse=False, sortKey=None, **_):
            with self.lock:
                rows = [self.variants[v] for v in state.variant_ids]
            nested_all = info.context.bulk_page is not None
            return connection(rows, lambda s: (s.id,), self.variant_view, first=first, after=after, last=last,
                              before=before, reverse=reverse, all_when_unbounded=nested_all)

        return {
            "id": f"{PRODUCT_GID}{state.id}", "legacyResourceId": str(state.id), "title": state.title,
            "handle": state.handle, "status": state.status, "createdAt": iso(state.created_at),
            "updatedAt": iso(state.updated_at), "totalInventory": total, "vendor": "ShopBridge Sandbox",
            "productType": "", "variants": variants,
            "variantsCount": {"count": len(state.variant_ids), "precision": "EXACT"},
            "_id": state.id, "_updated": state.updated_at, "_created": state.created_at,
        }

    def variant_view(self, state: VariantState) -> dict:
        item_id = state.inventory_item_id
        stocked = {loc: self.levels[(item_id, loc)] for loc in self.locations if (item_id, loc) in self.levels}
        product = self.products[state.product_id]
        display = product.title if state.title == "Default Title" else f"{product.title} - {state.title}"
        item = {
            "id": f"{ITEM_GID}{item_id}", "legacyResourceId": str(item_id), "sku": state.sku or None,
            "tracked": True, "createdAt": iso(state.created_at), "updatedAt": iso(state.updated_at),
            "inventoryLevels": lambda info, first=None, after=None, last=None, before=None, reverse=False,
            query=None, **_: self._levels_connection(item_id, info, first, after, last, before, reverse),
            "inventoryLevel": lambda info, locationId, **_: self.level_view(
                item_id, gid_number(locationId, LOCATION_GID)),
        }
        return {
            "id": f"{VARIANT_GID}{state.id}", "legacyResourceId": str(state.id), "title": state.title,
            "displayName": display, "sku": state.sku or None, "barcode": state.barcode or None,
            "price": money(state.price), "compareAtPrice": money(state.compare_at),
            "inventoryQuantity": sum(stocked.values()), "inventoryItem": item,
            "product": lambda info, **_: self.product_view(state.product_id),
            "createdAt": iso(state.created_at), "updatedAt": iso(state.updated_at),
            "_id": state.id, "_updated": state.updated_at, "_sku": state.sku, "_barcode": state.barcode,
            "_product": state.product_id,
        }

    def level_view(self, item_id: int, location_id: int | None) -> dict | None:
        if location_id is None or (item_id, location_id) not in self.levels:
            return None
        available = self.levels[(item_id, location_id)]
        updated = iso(self.level_updated.get((item_id, location_id), 0))

        def quantities(info, names, **_):
            values = {"available": available, "on_hand": max(available, 0)}
            return [{"id": f"gid://shopify/InventoryQuantity/{item_id}?location_id={location_id}&name={name}",
                     "name": name, "quantity": values.get(name, 0), "updatedAt": updated}
                    for name in names if name in QUANTITY_NAMES]

        return {
            "id": f"{LEVEL_GID}{item_id}?inventory_item_id={item_id}&location_id={location_id}",
            "quantities": quantities, "createdAt": updated, "updatedAt": updated,
            "location": lambda info, **_: self.location_view(location_id),
            "item": lambda info, **_: self.item_view(item_id),
            "_id": location_id,
        }

    def item_view(self, item_id: int) -> dict | None:
        variant_id = self.by_item.get(item_id)
        return None if variant_id is None else self.variant_view(self.variants[variant_id])["inventoryItem"]

    def _levels_connection(self, item_id, info, first, after, last, before, reverse):
        with self.lock:
            rows = [loc for loc in sorted(self.locations) if (item_id, loc) in self.levels]
            views = {loc: self.level_view(item_id, loc) for loc in rows}
        return connection(rows, lambda loc: (loc,), lambda loc: views[loc], first=first, after=after, last=last,
                          before=before, reverse=reverse, all_when_unbounded=info.context.bulk_page is not None)

    def location_view(self, location_id: int | None) -> dict | None:
        loc = self.locations.get(location_id)
        if loc is None:
            return None
        return {**loc, "id": f"{LOCATION_GID}{loc['id']}", "legacyResourceId": str(loc["id"]),
                "createdAt": iso(loc["createdAt"]), "updatedAt": iso(loc["createdAt"]),
                "inventoryLevel": lambda info, inventoryItemId, **_: self.level_view(
                    gid_number(inventoryItemId, ITEM_GID), location_id),
                "_id": loc["id"]}

    def by_gid(self, gid: str) -> dict | None:
        with self.lock:
            if (n := gid_number(gid, PRODUCT_GID)) is not None:
                return self.product_view(n)
            if (n := gid_number(gid, VARIANT_GID)) is not None:
                state = self.variants.get(n)
                return None if state is None else self.variant_view(state)
            if (n := gid_number(gid, ITEM_GID)) is not None:
                return self.item_view(n)
            if (n := gid_number(gid, LOCATION_GID)) is not None:
                return self.location_view(n)
        return None

    # --- root connections --------------------------------------------------------------------------------
    def products_page(self, *, first=None, after=None, last=None, before=None, reverse=False, sort_key="ID",
                      query=None, all_rows=False) -> tuple[dict, list[dict]]:
        predicate, warnings = _compile(query, PRODUCT_RANGES, {
            "status": lambda p: [p.status], "title": lambda p: [p.title], "handle": lambda p: [p.handle],
            "sku": lambda p: [self.variants[v].sku.strip() for v in p.variant_ids],
            "barcode": lambda p: [self.variants[v].barcode for v in p.variant_ids],
            "vendor": lambda p: ["ShopBridge Sandbox"]}, lambda p: p.title)
        sort_value = {"UPDATED_AT": lambda p: (p.updated_at, p.id), "CREATED_AT": lambda p: (p.created_at, p.id),
                      "TITLE": lambda p: (p.title, p.id)}.get(sort_key, lambda p: (p.id,))
        with self.lock:
            rows = [p for p in self.products.values() if predicate is None or predicate(p)]
            page = connection(rows, sort_value, (lambda p: p) if all_rows else (lambda p: self.product_view(p.id)),
                              first=first, after=after, last=last, before=before, reverse=reverse,
                              all_when_unbounded=all_rows)
        return page, warnings

    def variants_page(self, *, first=None, after=None, last=None, before=None, reverse=False, sort_key="ID",
                      query=None) -> tuple[dict, list[dict]]:
        ranges = {**VARIANT_RANGES, "product_id": (_number_span, lambda v: v.product_id)}
        predicate, warnings = _compile(query, ranges, {
            "sku": lambda v: [v.sku.strip()], "barcode": lambda v: [v.barcode], "title": lambda v: [v.title]},
            lambda v: f"{v.title} {v.sku}")
        sort_value = {"SKU": lambda v: (v.sku, v.id), "TITLE": lambda v: (v.title, v.id)}.get(
            sort_key, lambda v: (v.id,))
        with self.lock:
            rows = [v for v in self.variants.values() if predicate is None or predicate(v)]
            page = connection(rows, sort_value, self.variant_view, first=first, after=after, last=last,
                              before=before, reverse=reverse)
        return page, warnings

    def locations_page(self, *, first=None, after=None, last=None, before=None, reverse=False, sort_key="NAME",
                       query=None, include_inactive=False) -> tuple[dict, list[dict]]:
        predicate, warnings = _compile(query, {"id": (_number_span, lambda loc: loc["id"])},
                                       {"name": lambda loc: [loc["name"]]}, lambda loc: loc["name"])
        sort_value = (lambda loc: (loc["id"],)) if sort_key == "ID" else (lambda loc: (loc["name"], loc["id"]))
        with self.lock:
            rows = [loc for loc in self.locations.values()
                    if (include_inactive or loc["isActive"]) and (predicate is None or predicate(loc))]
            page = connection(rows, sort_value, lambda loc: self.location_view(loc["id"]), first=first,
                              after=after, last=last, before=before, reverse=reverse)
        return page, warnings


PRODUCT_RANGES = {"id": (_number_span, lambda p: p.id), "updated_at": (_time_span, lambda p: p.updated_at),
                  "created_at": (_time_span, lambda p: p.created_at)}
VARIANT_RANGES = {"id": (_number_span, lambda v: v.id), "updated_at": (_time_span, lambda v: v.updated_at)}


def _cursor(key: tuple) -> str:
    return base64.b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode()


def _cursor_key(cursor: str) -> tuple:
    try:
        return tuple(json.loads(base64.b64decode(cursor, validate=True)))
    except (ValueError, TypeError) as exc:
        raise GraphQLError("Invalid cursor for the current pagination sort.") from exc


def connection(rows: list, sort_value: Callable, view: Callable, *, first=None, after=None, last=None,
               before=None, reverse=False, all_when_unbounded=False) -> dict:
    """A Relay connection over ``rows`` ordered by ``sort_value`` (a tuple ending in the id), cursors carrying
    that tuple. Nested connections inside a bulk operation have no page size: all rows."""
    if first is None and last is None and not all_when_unbounded:
        raise GraphQLError("you must provide one of first or last")
    if first is not None and last is not None:
        raise GraphQLError("providing both first and last is not supported")
    size = first if first is not None else last
    if size is not None and (size < 0 or size > MAX_PAGE_SIZE):
        raise GraphQLError(f"The page size must be between 0 and {MAX_PAGE_SIZE}; {size} was given.")
    keyed = sorted(((tuple(sort_value(r)), r) for r in rows), key=lambda kr: kr[0], reverse=bool(reverse))
    if after:
        a = _cursor_key(after)
        keyed = [kr for kr in keyed if (kr[0] < a if reverse else kr[0] > a)]
        has_previous = True
    else:
        has_previous = False
    has_next = False
    if before:
        b = _cursor_key(before)
        keyed_before = [kr for kr in keyed if (kr[0] > b if reverse else kr[0] < b)]
        has_next = len(keyed_before) < len(keyed)
        keyed = keyed_before
    if size is not None:
        if first is not None:
            has_next = has_next or len(keyed) > size
            keyed = keyed[:size]
        else:
            has_previous = has_previous or len(keyed) > size
            keyed = keyed[max(len(keyed) - size, 0):]
    nodes = [view(r) for _, r in keyed]
    cursors = [_cursor(k) for k, _ in keyed]
    return {
        "nodes": nodes,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": has_previous,
                     "startCursor": cursors[0] if cursors else None, "endCursor": cursors[-1] if cursors else None},
    }
