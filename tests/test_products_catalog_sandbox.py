"""The catalog sandboxes: the generated population's shape, the mutable stores the sync side builds on, and the
truth endpoints scripts check against."""

from __future__ import annotations

import requests

from integrations.sandbox.catalog_population import DEFAULT_DEPOT_LOCATIONS, CatalogPopulation, render_sku
from integrations.sandbox.population import FastRandom


def test_population_plants_overlap_blanks_duplicates_and_case():
    population = CatalogPopulation(seed=7, products=300)
    truth = population.truth()
    assert len(population.nhanh) == 300
    assert len(truth.matched) > 100 and truth.ambiguous and truth.blank_nhanh and truth.blank_shopify
    # Both kinds of ambiguity: duplicated in Nhanh and duplicated in Shopify.
    assert any(len(n) > 1 for n, _ in truth.ambiguous.values())
    assert any(len(s) > 1 for _, s in truth.ambiguous.values())
    rendered = {v.sku for v in population.shopify_variants if v.key}
    assert any(s != s.strip() for s in rendered) and any(s.strip() != s.strip().upper() for s in rendered)
    # Parents with variants, and standalone products.
    assert any(item.parent_id for item in population.nhanh)
    assert any(item.parent_id is None and item.sellable for item in population.nhanh)
    # Deterministic.
    assert CatalogPopulation(seed=7, products=300, anchor=population.anchor).truth() == truth
    assert set(DEFAULT_DEPOT_LOCATIONS.values()) == {loc for loc, _ in population.locations}


def test_render_sku_keeps_the_key():
    rng = FastRandom(3)
    for _ in range(200):
        assert render_sku("sp00012-m", rng).strip().casefold() == "sp00012-m"


def test_store_methods_and_truth_endpoints(sandbox_factory):
    server = sandbox_factory(products=120, seed=3, rate_limit=False)
    nhanh, shopify = server.apps["nhanh"].catalog, server.apps["shopify"].catalog
    item = next(i for i in nhanh.items if i.sellable and i.stock)
    depot = next(iter(item.stock))
    updated = item.updated_at
    nhanh.set_available(item.id, depot, 5)
    assert nhanh.available(item.id, depot) == 5 and item.updated_at == updated
    truth = requests.get(f"{server.base_url}/_sandbox/nhanh/products", timeout=10).json()
    row = next(r for r in truth if r["id"] == item.id)
    assert row["code"] == item.code and row["depots"][str(depot)] == 5

    variant_id, state = next(iter(shopify.variants.items()))
    location = next(iter(shopify.locations))
    previous = shopify.level(state.inventory_item_id, location)
    assert shopify.set_level(state.inventory_item_id, location, 17) == previous
    assert shopify.level(state.inventory_item_id, location) == 17
    shopify.set_variant_prices(variant_id, 123_000, None)
    assert shopify.variant(variant_id)["price"] == 123_000
    inventory = requests.get(f"{server.base_url}/_sandbox/shopify/inventory", timeout=10).json()
    assert {"sku": state.sku, "variant_id": variant_id, "inventory_item_id": state.inventory_item_id,
            "location_id": location, "available": 17} in inventory


def test_control_hooks_refuse_unknown_ids_with_400(sandbox_factory):
    server = sandbox_factory(products=20, seed=3, rate_limit=False)
    answer = requests.post(f"{server.base_url}/_sandbox/nhanh/set_available",
                           json={"product_id": 1, "depot_id": 31010, "available": 3}, timeout=10)
    assert answer.status_code == 400 and "no Nhanh product" in answer.json()["error"]
    item = server.apps["nhanh"].catalog.items[1]
    ok = requests.post(f"{server.base_url}/_sandbox/nhanh/set_available",
                       json={"product_id": item.id, "depot_id": 31010, "available": 3}, timeout=10)
    assert ok.status_code == 200 and ok.json()["result"]["available"] == 3.0
    answer = requests.post(f"{server.base_url}/_sandbox/shopify/set_level",
                           json={"inventory_item_id": 1, "location_id": 2, "available": 3}, timeout=10)
    assert answer.status_code == 400


def test_bulk_query_over_products_variants_and_levels_is_accepted(sandbox_factory):
    """Two levels of nested connections under the root are allowed (shopify.md §10)."""
    from integrations.shopify.client import products_bulk_query

    server = sandbox_factory(products=20, seed=3, rate_limit=False, only=["nhanh", "shopify"])
    bulk = server.apps["shopify"].bulk
    assert bulk._check(products_bulk_query()) is None
    assert bulk._check(products_bulk_query("status:active")) is None
    assert "nesting depth" not in (bulk._check("{ products { edges { node { title } } } }") or "")
