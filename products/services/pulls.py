"""Catalog pulls from Nhanh and Shopify, declared on the pull framework (jobs.pull_specs).

| mode (system)    | progress id                    | reads                                                        |
|------------------|--------------------------------|--------------------------------------------------------------|
| all (nhanh)      | nhanh_products                 | product/list: every product with its stock per depot         |
| new (nhanh)      | nhanh_products_new             | product/list, updatedAtFrom/To since the last success (24 h) |
| filtered (nhanh) | nhanh_products_<hash(filters)> | product/list with name / status                              |
| stock (nhanh)    | nhanh_products_stock           | product/inventory: stock per depot only (*)                  |
| all (shopify)    | shopify_products               | locations, then products × variants × available per location |
| query (shopify)  | shopify_products_<hash(query)> | the same for products matching a Shopify search              |

(*) stock changes do not move Nhanh's updatedAt, so "new" misses them. Shopify reads through a bulk operation by
default, ``--via paged`` through productVariants pages.

Depots seen in stock become NhanhDepot rows (for staff to name and map to a location). Product rows carry their
stock (NhanhStock) and variants their levels (ShopifyInventoryLevel) as child tables, replaced when the row
changed.
"""

from __future__ import annotations

from collections.abc import Iterator

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from integrations.clients import client_for
from integrations.shopify.bulk import CHILDREN, ShopifyBulkSource
from jobs import bulk
from jobs.claims import make_progress_id
from jobs.errors import PullInputError
from jobs.ingest import ChildTable, upsert_records
from jobs.pull_specs import FilterField, Incremental, PullMode, PullSpec, SourceRequest, parse_text, register_pull_spec
from jobs.pulls import BatchResult, Page

from ..models import (
    NhanhDepot,
    NhanhProduct,
    NhanhStock,
    ShopifyInventoryLevel,
    ShopifyLocation,
    ShopifyProduct,
    ShopifyVariant,
)
from . import records

PULL_NHANH_PRODUCTS = "PULL_NHANH_PRODUCTS"
PULL_SHOPIFY_PRODUCTS = "PULL_SHOPIFY_PRODUCTS"
LOCATIONS_DONE = {"stage": "locations"}  # the Shopify pull's cursor after its first page (the locations)


# --- sources ------------------------------------------------------------------------------------------
class NhanhProductSource:
    """product/list (or with ``stock_only`` product/inventory) pages; the cursor is Nhanh's own."""

    def __init__(self, client, filters: dict, *, stock_only: bool = False):
        self.client, self.filters, self.stock_only = client, filters, stock_only

    def pages(self, cursor) -> Iterator[Page]:
        first = True
        for rows, next_cursor in self.client.iter_product_pages(self.filters, start_cursor=cursor,
                                                                stock_only=self.stock_only):
            progress = {"endpoint": "product/inventory" if self.stock_only else "product/list"} if first else None
            yield Page(rows, next_cursor, progress=progress)
            first = False


class ShopifyVariantPages:
    """Paged: productVariants with their product and levels, reshaped like a bulk operation's rows (a product
    with its variants under ``__children``, theirs their levels) so one upsert reads both."""

    def __init__(self, client, query: str | None):
        self.client, self.query = client, query

    def pages(self, cursor) -> Iterator[Page]:
        first = True
        for nodes, end_cursor, has_next in self.client.iter_variant_pages(self.query, after=cursor):
            rows = []
            for node in nodes:
                product = dict(node.get("product") or {})
                variant = {k: v for k, v in node.items() if k != "product"}
                item = dict(variant.get("inventoryItem") or {})
                levels = (item.pop("inventoryLevels", None) or {}).get("nodes") or []
                variant["inventoryItem"] = item
                variant[CHILDREN] = levels
                product[CHILDREN] = [variant]
                rows.append(product)
            yield Page(rows, end_cursor if has_next else None, progress={"path": "paged"} if first else None)
            first = False


class ShopifyCatalogSource:
    """The shop's locations first (one small page), then the products: the depot → location map needs them."""

    def __init__(self, client, products):
        self.client, self.products = client, products

    def pages(self, cursor) -> Iterator[Page]:
        if cursor is None:
            yield Page(self.client.locations(), dict(LOCATIONS_DONE), progress={"stage": "locations"})
        yield from self.products.pages(None if cursor == LOCATIONS_DONE else cursor)


def nhanh_source(request: SourceRequest) -> NhanhProductSource:
    filters: dict = {}
    if request.window:  # new/updated: Nhanh's updatedAt filters (product info only: stock does not move it)
        since, until = request.window
        filters = {"updatedAtFrom": int(since.timestamp()), "updatedAtTo": int(until.timestamp())}
    if request.filters.get("name"):
        filters["name"] = request.filters["name"]
    if request.filters.get("status"):
        filters["status"] = [request.filters["status"]]
    return NhanhProductSource(request.client, filters, stock_only=request.mode == "stock")


def shopify_source(request: SourceRequest) -> ShopifyCatalogSource:
    query = request.filters.get("query")
    if request.filters.get("via", "bulk") == "paged":
        products = ShopifyVariantPages(request.client, query)
    else:
        products = ShopifyBulkSource.products(request.client, query,
                                              poll_seconds=settings.SHOPBRIDGE["SHOPIFY_BULK_POLL_SECONDS"])
    return ShopifyCatalogSource(request.client, products)


# --- upserts ------------------------------------------------------------------------------------------
def _note_depots(depot_ids: set[int]) -> None:
    """Depots first seen in stock become NhanhDepot rows (ON CONFLICT DO NOTHING: named/mapped ones stay)."""
    if depot_ids:
        now = timezone.now()
        bulk.insert_ignoring_conflicts(NhanhDepot, [
            {"depot_id": d, "name": "", "location_id": None, "first_seen_at": now} for d in sorted(depot_ids)])


def _depots_in(rows: list[dict], *, stock_key: str = "inventory") -> set[int]:
    found = set()
    for raw in rows:
        try:
            found.update(s["depot_id"] for s in records.nhanh_depots((raw or {}).get(stock_key)))
        except (records.MalformedRow, AttributeError):
            continue  # the upsert reports the row
    return found


def upsert_nhanh_products(rows: list[dict]) -> BatchResult:
    result = upsert_records(rows, model=NhanhProduct, key="nhanh_id", key_of=records.nhanh_product_key,
                            parse=records.nhanh_product, children=ChildTable(NhanhStock, "product_id"))
    _note_depots(_depots_in(rows))
    return result


def upsert_nhanh_stock(rows: list[dict]) -> BatchResult:
    """product/inventory rows: replace the stock of the products we know (set-based: one DELETE, one INSERT, one
    UPDATE of stock_updated_at); products not pulled yet are skipped. Their payload hash is cleared so the next
    product/list pull rewrites them even if its record looks unchanged."""
    result = BatchResult()
    stock: dict[int, list[dict]] = {}
    for raw in rows:
        nhanh_id = records.nhanh_inventory_key(raw)
        try:
            if nhanh_id is None:
                raise records.MalformedRow("no usable productId")
            stock[nhanh_id] = records.nhanh_depots(raw.get("inventory"))
        except records.MalformedRow as exc:
            result.failed += 1
            result.errors.append(f"NhanhProduct {nhanh_id if nhanh_id is not None else '(no id)'}: {exc}")
    known = dict(NhanhProduct.objects.filter(nhanh_id__in=list(stock)).values_list("nhanh_id", "id"))
    result.skipped += len(stock) - len(known)
    result.updated += len(known)
    if known:
        NhanhStock.objects.filter(product_id__in=list(known.values())).delete()
        bulk.insert_ignoring_conflicts(NhanhStock, [
            {**row, "product_id": known[nhanh_id]} for nhanh_id, found in stock.items() if nhanh_id in known
            for row in found])
        NhanhProduct.objects.filter(id__in=list(known.values())).update(stock_updated_at=timezone.now(),
                                                                       payload_hash="")
    _note_depots({row["depot_id"] for found in stock.values() for row in found})
    return result


def upsert_nhanh_rows(rows: list[dict]) -> BatchResult:
    """One upsert for the spec's modes: product/inventory rows (``productId``, no ``id``) refresh stock only."""
    stock_only = bool(rows) and all(isinstance(r, dict) and "productId" in r and "id" not in r for r in rows)
    return upsert_nhanh_stock(rows) if stock_only else upsert_nhanh_products(rows)


def variant_rows(products: list[dict]) -> list[dict]:
    """The variants of product rows, each knowing its product (``__product``), levels under ``__children``."""
    variants = []
    for product in products:
        if not isinstance(product, dict):
            continue
        product_id = records.gid_id(product.get("id"))
        for child in product.get(CHILDREN) or []:
            if isinstance(child, dict) and records.gid_type(child.get("id")) == "ProductVariant":
                levels = [{k: v for k, v in level.items() if k != "__parentId"}
                          for level in child.get(CHILDREN) or [] if isinstance(level, dict)]
                variant = {k: v for k, v in child.items() if k not in ("__parentId", CHILDREN)}
                variants.append({**variant, "__product": product_id, CHILDREN: levels})
    return variants


def upsert_shopify_catalog(rows: list[dict]) -> BatchResult:
    """Locations, products and their variants (with levels) from one page of the Shopify pull."""
    locations = [r for r in rows if isinstance(r, dict) and records.gid_type(r.get("id")) == "Location"]
    products = [r for r in rows if not (isinstance(r, dict) and records.gid_type(r.get("id")) == "Location")]
    result = BatchResult()
    if locations:
        result.add(upsert_records(locations, model=ShopifyLocation, key="shopify_id", key_of=records.shopify_key,
                                  parse=records.shopify_location), keep_errors=20)
    if products:
        own = [{k: v for k, v in p.items() if k != CHILDREN} if isinstance(p, dict) else p for p in products]
        result.add(upsert_records(own, model=ShopifyProduct, key="shopify_id", key_of=records.shopify_key,
                                  parse=records.shopify_product), keep_errors=20)
        variants = variant_rows(products)
        stored = set(ShopifyProduct.objects.filter(
            shopify_id__in={v["__product"] for v in variants}).values_list("shopify_id", flat=True))
        orphans = [v for v in variants if v["__product"] not in stored]
        for v in orphans:  # their product could not be read: say so rather than break its foreign key
            result.failed += 1
            result.errors.append(f"ShopifyVariant {v.get('id')}: its product {v['__product']} was not stored")
        result.add(upsert_records([v for v in variants if v["__product"] in stored], model=ShopifyVariant,
                                  key="shopify_id", key_of=records.shopify_key, parse=records.shopify_variant,
                                  children=ChildTable(ShopifyInventoryLevel, "variant_id")), keep_errors=20)
    return result


# --- filters ------------------------------------------------------------------------------------------
def _status(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        status = int(value)
    except (TypeError, ValueError):
        raise PullInputError(f"product status must be 1, 2, 3 or 4, not {value!r}") from None
    if status not in (1, 2, 3, 4) or isinstance(value, bool):
        raise PullInputError("product status must be 1 (new), 2 (active), 3 (inactive) or 4 (out of stock)")
    return status


def _via(value) -> str | None:
    if value in (None, ""):
        return None
    if value not in ("bulk", "paged"):
        raise PullInputError(f"via must be bulk or paged, not {value!r}")
    return value


NHANH_FILTERS = (
    FilterField("name", parse_text("the product name/code/barcode"), form_name="product_name", cli_flag="--name",
                help="Nhanh products: name, code or barcode contains",
                form_field=lambda: forms.CharField(required=False, max_length=200, label=_("Name, code or barcode"),
                                                   help_text=_("Filters apply to “With filters” only."))),
    FilterField("status", _status, form_name="product_status", cli_flag="--status",
                help="Nhanh products: 1 new, 2 active, 3 inactive, 4 out of stock",
                form_field=lambda: forms.TypedChoiceField(
                    choices=[("", _("any"))] + [(1, _("New")), (2, _("Active")), (3, _("Inactive")),
                                                (4, _("Out of stock"))],
                    required=False, coerce=int, empty_value=None, label=_("Status"))),
)

SHOPIFY_FILTERS = (
    FilterField("via", _via, cli_flag="--via", identity=False,
                help="Shopify: bulk (a bulk operation, the default) or paged",
                form_field=lambda: forms.ChoiceField(
                    choices=[("", _("Bulk operation (default: fastest for many products)")),
                             ("paged", _("Paged query (small searches)"))], required=False, label=_("How"))),
    FilterField("query", parse_text("the Shopify search query"), form_name="product_query", cli_flag="--query",
                help="Shopify search query",
                form_field=lambda: forms.CharField(
                    required=False, max_length=500, label=_("Search query"),
                    help_text=_("Shopify search syntax, e.g. status:active, updated_at:>='2026-11-01'."))),
)


def _nhanh_progress_id(mode: PullMode, filters: dict) -> str:
    if mode.has_mark or mode.name == "stock":  # one pull per mode: stock and all may run side by side
        return f"nhanh_products_{mode.name}"
    return make_progress_id("nhanh", "products", filters)


def _record_api_cost(ctx, client) -> None:
    ctx.set_metadata(api_cost=getattr(client, "cost_spent", None))


def register() -> None:
    register_pull_spec(PullSpec(
        system="nhanh", kind="products", system_label="Nhanh", job_type=PULL_NHANH_PRODUCTS,
        label="Pull Nhanh products",
        modes=(
            PullMode("all", _("All products with their stock per depot, in the background")),
            PullMode("new", _("New / updated since the last pull (first time: last 24 h; stock changes need "
                            "“stock”), in the background"), incremental=Incremental()),
            PullMode("filtered", _("With filters, in the background"), filters=("name", "status"),
                     requires_filter="a filtered pull needs a filter (name or status)"),
            PullMode("stock", _("Stock only (product/inventory): every product's stock per depot, in the background")),
        ),
        filters=NHANH_FILTERS, default_mode="all", progress_id_of=_nhanh_progress_id,
        client=lambda: client_for("nhanh"), source=nhanh_source,
        upsert=upsert_nhanh_rows,
    ))
    register_pull_spec(PullSpec(
        system="shopify", kind="products", system_label="Shopify", job_type=PULL_SHOPIFY_PRODUCTS,
        label="Pull Shopify products",
        modes=(
            PullMode("all", _("Locations, then all products × variants × stock per location, in the background"),
                     filters=("via",)),
            PullMode("query", _("Products matching a Shopify search query, in the background"),
                     filters=("query", "via"),
                     requires_filter="a Shopify query pull needs a search query, e.g. status:active"),
        ),
        filters=SHOPIFY_FILTERS, default_mode="all",
        client=lambda: client_for("shopify"), source=shopify_source, upsert=upsert_shopify_catalog,
        after_run=_record_api_cost,
    ))

