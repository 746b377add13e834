"""Test setup for the product sync: the database loaded with what the sandboxes serve (both catalogs, the demo's
depot → location map, the unique-SKU pairs mapped), and connections pointing at a running sandbox."""

from __future__ import annotations

from decimal import Decimal

from integrations.models import Connection
from integrations.nhanh import sandbox as nhanh_sandbox
from integrations.sandbox.catalog_population import DEFAULT_DEPOT_LOCATIONS, DEPOTS, CatalogPopulation
from integrations.shopify import sandbox as shopify_sandbox
from products.models import (
    NhanhDepot,
    NhanhProduct,
    NhanhStock,
    ProductMapping,
    ProductMatchedBy,
    ShopifyInventoryLevel,
    ShopifyLocation,
    ShopifyProduct,
    ShopifyVariant,
    sku_key,
)

VERIFY_TOKEN = "SandboxVerifyToken0123456789"  # noqa: S105 - a test value


def connect(server, *, verify_token: str = VERIFY_TOKEN) -> None:
    Connection.objects.update_or_create(system="shopify", defaults={
        "base_url": server.url_for("shopify"), "access_token": shopify_sandbox.SANDBOX_ACCESS_TOKEN,
        "api_version": "2026-10", "is_sandbox": True})
    Connection.objects.update_or_create(system="nhanh", defaults={
        "base_url": server.url_for("nhanh"), "app_id": nhanh_sandbox.SANDBOX_APP_ID,
        "business_id": nhanh_sandbox.SANDBOX_BUSINESS_ID, "access_token": "x" * 128, "api_version": "3.0",
        "webhook_verify_token": verify_token, "is_sandbox": True})


def load_catalog(server) -> dict:
    """Both sandbox catalogs into the database as the pulls would store them, depots mapped as the demo does,
    and every SKU unique on both sides mapped. Returns counts."""
    nhanh, shopify = server.apps["nhanh"].catalog, server.apps["shopify"].catalog
    products = NhanhProduct.objects.bulk_create([
        NhanhProduct(nhanh_id=i.id, parent_id=i.parent_id, code=i.code, sku_key=sku_key(i.code),
                     name=i.name, status=i.status, retail_price=Decimal(i.retail), old_price=Decimal(i.old),
                     raw={}, payload_hash=str(i.id))
        for i in nhanh.items])
    by_nhanh = {p.nhanh_id: p for p in products}
    stocks = []
    for item in nhanh.items:
        if not item.sellable:
            continue
        for depot_id in item.stock:
            stocks.append(NhanhStock(product=by_nhanh[item.id], depot_id=depot_id,
                                     available=nhanh.available(item.id, depot_id)))
    NhanhStock.objects.bulk_create(stocks)
    locations = {loc_id: ShopifyLocation.objects.create(shopify_id=loc_id, name=loc["name"], raw={},
                                                        payload_hash=str(loc_id))
                 for loc_id, loc in shopify.locations.items()}
    NhanhDepot.objects.bulk_create([NhanhDepot(depot_id=d, name=name,
                                               location=locations[DEFAULT_DEPOT_LOCATIONS[d]])
                                    for d, name in DEPOTS])
    ShopifyProduct.objects.bulk_create([ShopifyProduct(shopify_id=p.id, title=p.title, raw={},
                                                       payload_hash=str(p.id)) for p in shopify.products.values()])
    variants = ShopifyVariant.objects.bulk_create([
        ShopifyVariant(shopify_id=v.id, product_id=v.product_id, title=v.title, sku=v.sku, sku_key=sku_key(v.sku),
                       price=Decimal(v.price), compare_at_price=None if v.compare_at is None else Decimal(v.compare_at),
                       inventory_item_id=v.inventory_item_id, raw={}, payload_hash=str(v.id))
        for v in shopify.variants.values()])
    by_item = {v.inventory_item_id: v for v in variants}
    ShopifyInventoryLevel.objects.bulk_create([
        ShopifyInventoryLevel(variant=by_item[item], location_id=loc, available=qty)
        for (item, loc), qty in shopify.levels.items()])
    # Map every SKU that is unique on both sides (what auto-match does).
    nhanh_keys: dict[str, list] = {}
    for p in products:
        if p.sku_key and nhanh.by_id[p.nhanh_id].sellable:
            nhanh_keys.setdefault(p.sku_key, []).append(p)
    shopify_keys: dict[str, list] = {}
    for v in variants:
        if v.sku_key:
            shopify_keys.setdefault(v.sku_key, []).append(v)
    pairs = [(ps[0], shopify_keys[k][0]) for k, ps in nhanh_keys.items()
             if len(ps) == 1 and len(shopify_keys.get(k, ())) == 1]
    ProductMapping.objects.bulk_create([ProductMapping(nhanh_product=p, shopify_variant=v,
                                                       matched_by=ProductMatchedBy.SKU, matched_sku=p.sku_key)
                                        for p, v in pairs])
    return {"mappings": len(pairs), "levels": len(shopify.levels)}


def truth_by_item(server) -> dict[tuple[int, int], int]:
    shopify = server.apps["shopify"].catalog
    with shopify.lock:
        return dict(shopify.levels)


def expected_levels() -> dict[tuple[int, int], int]:
    """(inventory item id, location id) → the quantity Nhanh's depots say, for every active mapping."""
    depot_location = dict(NhanhDepot.objects.filter(location__isnull=False)
                          .values_list("depot_id", "location__shopify_id"))
    locations = set(depot_location.values())
    wanted: dict[tuple[int, int], int] = {}
    for m in ProductMapping.objects.filter(is_active=True).select_related("shopify_variant"):
        for loc in locations:
            wanted[(m.shopify_variant.inventory_item_id, loc)] = 0
        for s in NhanhStock.objects.filter(product_id=m.nhanh_product_id):
            loc = depot_location.get(s.depot_id)
            if loc is not None:
                wanted[(m.shopify_variant.inventory_item_id, loc)] += max(int(s.available), 0)
    return wanted


__all__ = ["VERIFY_TOKEN", "CatalogPopulation", "connect", "expected_levels", "load_catalog", "truth_by_item"]
