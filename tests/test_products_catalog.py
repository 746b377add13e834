"""Catalog pulls end to end over real HTTP against the sandboxes, and the SKU auto-match against the generator's
ground truth."""

from __future__ import annotations

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from integrations.models import Connection
from integrations.nhanh import sandbox as nhanh_sandbox
from integrations.sandbox.server import control
from integrations.shopify import sandbox as shopify_sandbox
from jobs.models import BackgroundJob, JobStatus, PullProgress
from jobs.pull_specs import start_pull
from products.models import (
    AmbiguousSku,
    NhanhDepot,
    NhanhProduct,
    NhanhStock,
    ProductMapping,
    ShopifyInventoryLevel,
    ShopifyLocation,
    ShopifyProduct,
    ShopifyVariant,
)
from products.services import automatch, mappings
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def eager(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 6, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05, "SHOPIFY_BULK_POLL_SECONDS": 0.1, "UPSERT_BATCH_SIZE": 150}
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def connect(server):
    Connection.objects.update_or_create(system="nhanh", defaults={
        "base_url": server.url_for("nhanh"), "app_id": nhanh_sandbox.SANDBOX_APP_ID,
        "business_id": nhanh_sandbox.SANDBOX_BUSINESS_ID, "access_token": nhanh_sandbox.SANDBOX_ACCESS_TOKEN,
        "requests_per_window": None, "is_sandbox": True})
    Connection.objects.update_or_create(system="shopify", defaults={
        "base_url": server.url_for("shopify"), "access_token": shopify_sandbox.SANDBOX_ACCESS_TOKEN,
        "api_version": "2026-10", "is_sandbox": True})


@pytest.fixture
def catalog(sandbox_factory):
    server = sandbox_factory(customers=50, products=400, seed=5)
    connect(server)
    control(server.base_url, "shopify", "plan", {"maximum": 20000, "restore": 1000})
    return server


def pull(system, mode="all", **filters) -> BackgroundJob:
    job = BackgroundJob.objects.get(pk=start_pull(system, "products", mode, filters=filters).job.pk)
    assert job.status == JobStatus.COMPLETED, job.error
    return job


def population(server):
    return server.apps["nhanh"].catalog.population


def stored_stock() -> dict[int, dict[str, int]]:
    stock: dict[int, dict[str, int]] = {}
    for nhanh_id, depot, available in NhanhStock.objects.values_list("product__nhanh_id", "depot_id", "available"):
        stock.setdefault(nhanh_id, {})[str(depot)] = int(available)
    return stock


def truth_stock(server) -> dict[int, dict[str, int]]:
    rows = requests.get(f"{server.base_url}/_sandbox/nhanh/products", timeout=10).json()
    return {row["id"]: row["depots"] for row in rows if row["depots"]}


# --- Nhanh ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,end", [("object", "null"), ("array", "absent"), ("mixed", "mixed"),
                                       ("object", "empty_array"), ("array", "empty_object"),
                                       ("mixed", "empty_string")])
def test_nhanh_pull_reads_every_cursor_shape(catalog, shape, end):
    control(catalog.base_url, "nhanh", "faults", {"cursor_shape": shape, "cursor_end": end})
    job = pull("nhanh")
    pop = population(catalog)
    assert set(NhanhProduct.objects.values_list("nhanh_id", flat=True)) == {i.id for i in pop.nhanh}
    assert job.metadata["created"] == len(pop.nhanh) and job.metadata["pages"] >= 4
    assert stored_stock() == truth_stock(catalog)


def test_nhanh_pull_stores_products_stock_depots_and_keys(catalog):
    pull("nhanh")
    pop = population(catalog)
    item = next(i for i in pop.nhanh if i.parent_id and i.key)
    product = NhanhProduct.objects.get(nhanh_id=item.id)
    assert product.code == item.code and product.sku_key == item.key and product.parent_id == item.parent_id
    assert product.stock_updated_at is not None and product.retail_price == item.retail
    assert set(NhanhDepot.objects.values_list("depot_id", flat=True)) == {d for d, _ in pop.depots}
    blanks = set(NhanhProduct.objects.filter(sku_key="").values_list("nhanh_id", flat=True))
    assert blanks == set(pop.truth().blank_nhanh)
    # A second pull changes nothing.
    again = pull("nhanh")
    assert again.metadata["created"] == 0 and again.metadata["updated"] == 0


def test_stock_only_pull_sees_what_updated_at_does_not(catalog):
    pull("nhanh")
    nhanh = catalog.apps["nhanh"].catalog
    item = next(i for i in nhanh.items if i.sellable and i.stock)
    depot = next(iter(item.stock))
    nhanh.set_available(item.id, depot, 3)
    new = pull("nhanh", "new")  # updatedAt did not move: the new/updated pull misses the sale
    assert new.metadata["updated"] == 0
    assert stored_stock()[item.id][str(depot)] != 3 or nhanh.available(item.id, depot) == 3
    before = NhanhProduct.objects.get(nhanh_id=item.id).stock_updated_at
    stock = pull("nhanh", "stock")
    assert stock.metadata["updated"] == len(nhanh.items)
    assert stored_stock() == truth_stock(catalog)
    assert NhanhProduct.objects.get(nhanh_id=item.id).stock_updated_at > before
    # The stock pull and the full pull are separate claims.
    progress = set(PullProgress.objects.values_list("progress_id", flat=True))
    assert {"nhanh_products_stock", "nhanh_products"} <= progress
    # The next full pull rewrites the product (its hash was cleared), stock still right.
    assert pull("nhanh").metadata["updated"] >= 1 and stored_stock() == truth_stock(catalog)


def test_nhanh_filtered_pull_and_bad_filters(catalog):
    job = pull("nhanh", "filtered", name="sp0000")
    assert 0 < job.metadata["created"] < 60
    assert all("sp0000" in (p.code + p.name).lower() for p in NhanhProduct.objects.all())
    with pytest.raises(CommandError, match="product status"):
        call_command("pull", "nhanh", "products", "--mode", "filtered", "--status", "9")


# --- Shopify ----------------------------------------------------------------------------------------------
def shopify_truth(server) -> set[tuple[int, int, int]]:
    rows = requests.get(f"{server.base_url}/_sandbox/shopify/inventory", timeout=10).json()
    return {(r["variant_id"], r["location_id"], r["available"]) for r in rows}


def stored_levels() -> set[tuple[int, int, int]]:
    return set(ShopifyInventoryLevel.objects.values_list("variant__shopify_id", "location_id", "available"))


@pytest.mark.parametrize("via", ["bulk", "paged"])
def test_shopify_pull_products_variants_levels_and_locations(catalog, via):
    job = pull("shopify", via=via)
    pop = population(catalog)
    assert set(ShopifyLocation.objects.values_list("shopify_id", flat=True)) == {loc for loc, _ in pop.locations}
    assert ShopifyProduct.objects.count() == len(pop.shopify_products)
    assert set(ShopifyVariant.objects.values_list("shopify_id", flat=True)) == {v.id for v in pop.shopify_variants}
    assert stored_levels() == shopify_truth(catalog)
    v = pop.shopify_variants[3]
    stored = ShopifyVariant.objects.get(shopify_id=v.id)
    assert (stored.sku, stored.sku_key, stored.inventory_item_id, stored.product_id) == (
        v.sku, v.key, v.inventory_item_id, v.product_id)
    assert job.metadata["failed"] == 0
    again = pull("shopify", via=via)
    assert again.metadata["created"] == 0 and again.metadata["updated"] == 0
    # A changed level is read again.
    shopify = catalog.apps["shopify"].catalog
    shopify.set_level(v.inventory_item_id, pop.locations[0][0], 99)
    pull("shopify", via=via)
    assert stored_levels() == shopify_truth(catalog)


def test_shopify_bulk_pull_fails_mid_operation_and_a_rerun_re_attaches(catalog):
    """The pull fails while Shopify works (its checkpoint names the operation): the re-run resumes from that
    checkpoint, re-attaches to the same operation and stores everything."""
    import threading

    from django.db import connections

    control(catalog.base_url, "shopify", "bulk", {"rows_per_second": 300})
    box = {}

    def run():
        try:
            box["started"] = start_pull("shopify", "products", "all")
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: (PullProgress.objects.filter(progress_id="shopify_products").values_list(
        "checkpoint", flat=True).first() or {}).get("cursor", {}).get("bulk_id"), timeout=30, message="bulk id")
    control(catalog.base_url, "shopify", "faults", {"server_error_next": 1000})
    thread.join(60)
    failed = BackgroundJob.objects.get(pk=box["started"].job.pk)
    assert failed.status == JobStatus.FAILED
    control(catalog.base_url, "shopify", "reset_faults", {})
    again = start_pull("shopify", "products", "all")
    assert again.resumed
    assert BackgroundJob.objects.get(pk=again.job.pk).status == JobStatus.COMPLETED
    assert ShopifyVariant.objects.count() == len(population(catalog).shopify_variants)
    assert control(catalog.base_url, "shopify", "stats", {})["result"]["bulk_operations_started"] == 1


# --- auto-match -------------------------------------------------------------------------------------------
def pulled(server):
    pull("nhanh")
    pull("shopify")
    return population(server).truth()


def mapped_pairs() -> dict[int, int]:
    return dict(ProductMapping.objects.filter(is_active=True).values_list(
        "nhanh_product__nhanh_id", "shopify_variant__shopify_id"))


def test_automatch_equals_the_ground_truth_and_is_idempotent(catalog):
    truth = pulled(catalog)
    dry = automatch.auto_match_products(dry_run=True)
    assert dry.matched == len(truth.matched) and ProductMapping.objects.count() == 0
    assert AmbiguousSku.objects.count() == 0  # a dry run writes nothing
    result = automatch.auto_match_products()
    assert mapped_pairs() == truth.matched
    assert result.matched == len(truth.matched) and result.ambiguous == len(truth.ambiguous)
    stored = {a.sku_key: (sorted(a.nhanh_product_ids), sorted(a.shopify_variant_ids))
              for a in AmbiguousSku.objects.all()}
    assert stored == truth.ambiguous
    assert {a["sku"] for a in result.ambiguous_skus} == set(truth.ambiguous)
    assert result.blank_nhanh == len(truth.blank_nhanh) and result.blank_shopify == len(truth.blank_shopify)
    # A second run creates nothing and lists the same ambiguous SKUs.
    again = automatch.auto_match_products()
    assert again.matched == 0 and mapped_pairs() == truth.matched
    assert AmbiguousSku.objects.count() == len(truth.ambiguous)


def test_manual_matches_and_unmatches_are_kept(catalog, django_user_model):
    truth = pulled(catalog)
    (n1, v1), (n2, v2) = list(truth.matched.items())[:2]
    p1, p2 = NhanhProduct.objects.get(nhanh_id=n1), NhanhProduct.objects.get(nhanh_id=n2)
    var1, var2 = ShopifyVariant.objects.get(shopify_id=v1), ShopifyVariant.objects.get(shopify_id=v2)
    # Staff cross the pair on purpose: auto-match must keep it.
    mappings.match_manually(p1.pk, var2.pk)
    automatch.auto_match_products()
    assert ProductMapping.objects.get(nhanh_product=p1).shopify_variant_id == var2.pk
    assert not ProductMapping.objects.filter(nhanh_product=p2, is_active=True).exists()  # its variant is taken
    # An unmatch is kept: the product stays unmapped, its variant becomes free.
    mapping = ProductMapping.objects.get(nhanh_product=p1)
    mappings.unmatch([mapping])
    automatch.auto_match_products()
    assert not ProductMapping.objects.get(nhanh_product=p1).is_active
    assert ProductMapping.objects.get(nhanh_product=p2).shopify_variant_id == var2.pk
    assert ProductMapping.objects.filter(shopify_variant=var1, is_active=True).count() == 0
    with pytest.raises(mappings.MappingError):
        mappings.match_manually(p1.pk, var2.pk)  # var2 now belongs to p2


def test_a_variant_is_never_claimed_twice(catalog):
    pulled(catalog)
    automatch.auto_match_products()
    taken = ProductMapping.objects.filter(is_active=True).first()
    other = NhanhProduct.objects.filter(mapping__isnull=True).first()
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ProductMapping.objects.create(nhanh_product=other, shopify_variant_id=taken.shopify_variant_id,
                                      matched_by="sku")


def test_automatch_command(catalog, capsys):
    truth = pulled(catalog)
    call_command("automatch", "products", "--dry-run", "--wait")
    out = capsys.readouterr().out
    assert f"Would match {len(truth.matched)}" in out and ProductMapping.objects.count() == 0
    call_command("automatch", "products", "--wait")
    assert f"Matched {len(truth.matched)}" in capsys.readouterr().out
    call_command("automatch", "products", "--wait")
    assert "Matched 0;" in capsys.readouterr().out


def test_pull_command_for_products(catalog, capsys):
    call_command("pull", "nhanh", "products", "--mode", "all", "--wait")
    assert f"{len(population(catalog).nhanh)} created" in capsys.readouterr().out
    call_command("pull", "shopify", "products", "--via", "paged", "--wait")
    assert "created" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not 'nope'"):
        call_command("pull", "nhanh", "products", "--mode", "nope")


# --- stock per location -----------------------------------------------------------------------------------
def test_desired_levels_sum_the_depots_feeding_each_location(catalog):
    from integrations.sandbox.catalog_population import DEFAULT_DEPOT_LOCATIONS
    from products.services.stock import assign_depot_locations, desired_levels

    pulled(catalog)
    automatch.auto_match_products()
    assert desired_levels() == []  # no depot feeds a location yet
    # Every depot but the last: Hà Nội's two depots feed one location.
    feeding = dict(list(DEFAULT_DEPOT_LOCATIONS.items())[:3])
    assign_depot_locations(feeding)
    truth = truth_stock(catalog)
    shopify = {(v, loc): qty for v, loc, qty in shopify_truth(catalog)}
    mapped = mapped_pairs()
    expected = {}
    for nhanh_id, variant_id in mapped.items():
        for location in set(feeding.values()):
            total = sum(truth.get(nhanh_id, {}).get(str(d), 0) for d, loc in feeding.items() if loc == location)
            expected[(variant_id, location)] = (max(total, 0), shopify.get((variant_id, location)))
    levels = desired_levels()
    assert {(lvl.variant_shopify_id, lvl.location_id): (lvl.available, lvl.shopify_available)
            for lvl in levels} == expected
    assert len(levels) == len(mapped) * 2
    assert any(lvl.available == 0 for lvl in levels) and all(isinstance(lvl.available, int) for lvl in levels)
    some = levels[0].mapping_id
    assert {lvl.mapping_id for lvl in desired_levels(mapping_ids=[some])} == {some}
    assert all(lvl.differs for lvl in desired_levels(only_differing=True))
    with pytest.raises(ValueError, match="unknown Shopify location"):
        assign_depot_locations({31010: 1})


def test_demo_maps_every_sandbox_depot_to_a_location_and_the_pulls_fill_them(catalog, capsys):
    from collections import Counter

    call_command("demo", "--sandbox-url", catalog.base_url)
    assert "Nhanh depot 31010" in capsys.readouterr().out
    pop = population(catalog)
    depots = {d.depot_id: d.location.shopify_id for d in NhanhDepot.objects.select_related("location")}
    assert set(depots) == {d for d, _ in pop.depots}
    fed = Counter(depots.values())
    assert set(fed) == {loc for loc, _ in pop.locations} and max(fed.values()) >= 2
    connect(catalog)  # the demo points connections at the sandbox's default address
    pull("nhanh")
    pull("shopify")
    assert ShopifyLocation.objects.filter(payload_hash="").count() == 0  # the pull filled them in
    assert {d.depot_id: d.location.shopify_id for d in NhanhDepot.objects.select_related("location")} == depots


def test_json_api_starts_product_pulls_and_refuses_a_second(catalog, staff_client, settings):
    from django.urls import reverse

    from config.celery import app

    app.conf.task_always_eager = False  # queued, not run: the second start meets the first one's claim
    url = reverse("jobs:start-pull", args=["products"])
    first = staff_client.post(url, {"system": "nhanh", "mode": "stock"}, content_type="application/json")
    assert first.status_code == 202, first.content
    again = staff_client.post(url, {"system": "nhanh", "mode": "stock"}, content_type="application/json")
    assert again.status_code == 409
    other = staff_client.post(url, {"system": "nhanh", "mode": "all"}, content_type="application/json")
    assert other.status_code == 202  # stock and all are separate pulls
    bad = staff_client.post(url, {"system": "nhanh", "mode": "nope"}, content_type="application/json")
    assert bad.status_code == 400


def test_admin_pull_page_starts_and_force_restarts_product_pulls(catalog, staff_client):
    from django.urls import reverse

    from config.celery import app

    app.conf.task_always_eager = False
    url = reverse("admin:products_shopifyproduct_pull")
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"mode": "all"}).status_code == 302
    first = PullProgress.objects.get(progress_id="shopify_products").job_id
    refused = staff_client.post(url, {"mode": "all"}, follow=True)
    assert "already running" in refused.content.decode()
    assert staff_client.post(url, {"mode": "all", "force_restart": "on"}).status_code == 302
    assert PullProgress.objects.get(progress_id="shopify_products").job_id != first


def test_two_auto_matches_at_once_claim_each_variant_once(catalog):
    import threading

    from django.db import connections

    truth = pulled(catalog)
    results, errors = [], []

    def run():
        try:
            results.append(automatch.auto_match_products())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.matched for r in results) == [0, len(truth.matched)]  # the second waited, then found nothing
    assert mapped_pairs() == truth.matched


@pytest.mark.parametrize("shape", ["object", "array"])
def test_nhanh_product_source_resumes_after_any_page(catalog, shape):
    """A checkpointed cursor (whatever shape Nhanh gave it) continues right after its page."""
    from integrations.clients import client_for
    from products.services.pulls import NhanhProductSource

    control(catalog.base_url, "nhanh", "faults", {"cursor_shape": shape})
    client = client_for("nhanh")
    first = NhanhProductSource(client, {}).pages(None)
    page = next(first)
    first.close()
    rest = [row["id"] for p in NhanhProductSource(client_for("nhanh"), {}).pages(page.cursor_after) for row in p.rows]
    done = [row["id"] for row in page.rows]
    assert not set(done) & set(rest)
    assert sorted(done + rest) == sorted(i.id for i in population(catalog).nhanh)


def test_numbers_as_strings_extra_fields_and_malformed_rows(catalog):
    control(catalog.base_url, "nhanh", "faults", {"numbers_as_strings_rate": 0.5, "extra_fields_rate": 0.5})
    pull("nhanh")
    assert stored_stock() == truth_stock(catalog)
    NhanhProduct.objects.all().delete()
    control(catalog.base_url, "nhanh", "faults", {"numbers_as_strings_rate": 0, "malformed_rate": 0.05})
    job = pull("nhanh")
    assert job.metadata["failed"] > 0 and job.metadata["errors"]
    assert NhanhProduct.objects.count() == len(population(catalog).nhanh) - job.metadata["failed"]
