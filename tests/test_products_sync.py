"""Stock (and price) sync to Shopify against the sandbox over real HTTP: depot sums per location, only changed
levels sent, a second sync sends nothing, stale compare-and-swap, idempotent resend after a dropped connection,
user errors kept verbatim, throttling, prices only when asked and only changed."""

from __future__ import annotations

import json
import threading

import pytest

from customers.models import SyncStatus
from integrations.clients import client_for
from integrations.sandbox.server import control
from jobs.models import BackgroundJob, JobStatus, StartedBy
from jobs.operations import RETRY_FAILED_SYNC
from jobs.results import result_of
from products.models import NhanhStock, ProductMapping, ShopifyInventoryLevel, StockPush
from products.services import sync
from tests.products_helpers import connect, expected_levels, load_catalog, truth_by_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(sandbox_factory):
    server = sandbox_factory(customers=10, seed=5, products=80)
    connect(server)
    counts = load_catalog(server)
    assert counts["mappings"] > 20
    return server


def stats(server) -> dict:
    return control(server.base_url, "shopify", "stats")["result"]


def in_step(server) -> list:
    """Mapped levels where the sandbox differs from what Nhanh's depots say (empty: all in step)."""
    truth = truth_by_item(server)
    return [(key, want, truth.get(key)) for key, want in expected_levels().items() if truth.get(key, 0) != want]


def change_nhanh(mapping: ProductMapping, depot_id: int, available: int) -> None:
    NhanhStock.objects.update_or_create(product_id=mapping.nhanh_product_id, depot_id=depot_id,
                                        defaults={"available": available})


def test_depot_sums_per_location(shop):
    """Several depots feeding one location are summed (whole units, never below 0); a location no depot of the
    product stocks gets 0; only the levels that differ from Shopify's become changes."""
    m = ProductMapping.objects.order_by("pk").first()
    NhanhStock.objects.filter(product_id=m.nhanh_product_id).delete()
    change_nhanh(m, 31010, 7)   # Hà Nội location ← 31010 + 31011
    change_nhanh(m, 31011, 5.5)  # fractions dropped: whole units
    change_nhanh(m, 31012, -3)  # negative available: 0
    ShopifyInventoryLevel.objects.filter(variant_id=m.shopify_variant_id).update(available=1)
    changes, unchanged, problems = sync.level_changes([m.pk])
    assert {c.location_id: (c.quantity, c.change_from) for c in changes} == {
        71_000_000_001: (12, 1), 71_000_000_002: (0, 1), 71_000_000_003: (0, 1)}
    assert problems == {}
    sync.sync_products(None, scope="ids", ids=[m.pk])
    item = ProductMapping.objects.get(pk=m.pk).shopify_variant.inventory_item_id
    truth = truth_by_item(shop)
    assert [truth[(item, loc)] for loc in (71_000_000_001, 71_000_000_002, 71_000_000_003)] == [12, 0, 0]


def test_a_sync_sets_exactly_the_changed_levels_and_a_second_sends_nothing(shop):
    first = sync.sync_products(None, scope="all")
    assert first.failed == 0 and first.levels_sent > 0
    assert in_step(shop) == []
    assert StockPush.objects.count() == 0
    assert ProductMapping.objects.exclude(sync_status=SyncStatus.SYNCED).count() == 0

    before = stats(shop)
    mappings = list(ProductMapping.objects.order_by("pk")[:3])
    change_nhanh(mappings[0], 31010, 101)
    change_nhanh(mappings[1], 31012, 102)
    change_nhanh(mappings[2], 31013, 103)
    second = sync.sync_products(None, scope="all")
    after = stats(shop)
    assert second.levels_sent == 3 and second.calls == 1
    assert after["level_writes"] - before["level_writes"] == 3
    assert in_step(shop) == []
    assert mappings[0].__class__.objects.get(pk=mappings[0].pk).last_sent_stock["71000000001"] >= 101

    third = sync.sync_products(None, scope="all")
    assert third.levels_sent == 0 and third.calls == 0
    assert stats(shop)["requests_served"] == after["requests_served"]


def test_a_stale_level_is_read_again_and_set_once_more(shop):
    sync.sync_products(None, scope="all")
    m = ProductMapping.objects.select_related("shopify_variant").order_by("pk").first()
    item = m.shopify_variant.inventory_item_id
    # A sale in Shopify meanwhile: the level we last read is no longer there.
    control(shop.base_url, "shopify", "set_level", {"inventory_item_id": item, "location_id": 71_000_000_002,
                                                    "available": 999})
    change_nhanh(m, 31012, 4)
    totals = sync.sync_products(None, scope="ids", ids=[m.pk])
    assert totals.stale_reread == 1 and totals.failed == 0
    assert truth_by_item(shop)[(item, 71_000_000_002)] == 4
    assert stats(shop)["inventory_stale"] == 1
    assert ShopifyInventoryLevel.objects.get(variant=m.shopify_variant, location_id=71_000_000_002).available == 4


def test_stale_twice_is_an_error_kept_verbatim(shop, monkeypatch):
    sync.sync_products(None, scope="all")
    m = ProductMapping.objects.select_related("shopify_variant").order_by("pk").first()
    item = m.shopify_variant.inventory_item_id
    control(shop.base_url, "shopify", "set_level", {"inventory_item_id": item, "location_id": 71_000_000_002,
                                                    "available": 999})
    change_nhanh(m, 31012, 4)
    real_read = sync.inventory.read_available

    def read_then_sell(client, item_gid, location_gid):  # another sale right after our read-back
        value = real_read(client, item_gid, location_gid)
        control(shop.base_url, "shopify", "set_level", {"inventory_item_id": item, "location_id": 71_000_000_002,
                                                        "available": 998})
        return value

    monkeypatch.setattr(sync.inventory, "read_available", read_then_sell)
    totals = sync.sync_products(None, scope="ids", ids=[m.pk])
    m.refresh_from_db()
    assert totals.failed == 1 and m.sync_status == SyncStatus.FAILED
    errors = json.loads(m.last_error)
    assert errors[0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    assert errors[0]["field"][:2] == ["input", "quantities"]


def test_a_dropped_connection_is_resent_with_the_same_key_and_applied_once(shop):
    sync.sync_products(None, scope="all")
    mappings = list(ProductMapping.objects.order_by("pk")[:2])
    change_nhanh(mappings[0], 31010, 55)
    change_nhanh(mappings[1], 31010, 56)
    before = stats(shop)
    # Shopify applies the call, then the connection drops before the answer.
    control(shop.base_url, "shopify", "faults", {"drop_after_commit_next": 1})
    totals = sync.sync_products(None, scope="all")
    after = stats(shop)
    assert totals.failed == 0 and totals.levels_sent == 2
    assert after["inventory_replays"] - before["inventory_replays"] == 1  # the resend was a replay
    assert after["level_writes"] - before["level_writes"] == 2  # applied once
    assert after["inventory_stale"] == before["inventory_stale"]  # a blind resend would have been stale
    assert in_step(shop) == [] and StockPush.objects.count() == 0


def test_a_push_without_any_answer_is_kept_and_the_retry_reuses_its_key(shop):
    sync.sync_products(None, scope="all")
    m = ProductMapping.objects.order_by("pk").first()
    change_nhanh(m, 31013, 77)
    control(shop.base_url, "shopify", "faults", {"drop_after_commit_next": sync.inventory.SEND_ATTEMPTS})
    totals = sync.sync_products(None, scope="all")
    assert totals.failed == 1
    m.refresh_from_db()
    assert m.sync_status == SyncStatus.FAILED and "idempotency key" in m.last_error
    push = StockPush.objects.get()
    key = push.idempotency_key
    assert key in m.last_error and push.claimed_at is None

    before = stats(shop)
    job = sync.start_product_sync(scope="failed", started_by=StartedBy.COMMAND, run_now=True)
    job.refresh_from_db()
    assert job.type == RETRY_FAILED_SYNC and job.params["target"] == "products"
    assert job.status == JobStatus.COMPLETED, job.error
    result = result_of(job)
    assert result.resent_pushes == 1 and result.failed == 0
    assert stats(shop)["inventory_replays"] - before["inventory_replays"] == 1
    assert StockPush.objects.count() == 0
    m.refresh_from_db()
    assert m.sync_status == SyncStatus.SYNCED and m.last_error == ""
    assert in_step(shop) == []


def test_user_errors_are_kept_verbatim_and_the_others_still_go(shop):
    bad = ProductMapping.objects.select_related("shopify_variant").order_by("pk").first()
    control(shop.base_url, "shopify", "inventory_user_errors", {
        "inventory_item_ids": [bad.shopify_variant.inventory_item_id], "code": "NON_MUTABLE_INVENTORY_ITEM",
        "message": "Không thể thay đổi tồn kho của mặt hàng này"})
    totals = sync.sync_products(None, scope="all")
    bad.refresh_from_db()
    assert bad.sync_status == SyncStatus.FAILED
    errors = json.loads(bad.last_error)
    assert {e["code"] for e in errors} == {"NON_MUTABLE_INVENTORY_ITEM"}
    assert errors[0]["message"] == "Không thể thay đổi tồn kho của mặt hàng này"
    assert totals.failed == 1 and totals.synced == totals.mappings - 1
    item = bad.shopify_variant.inventory_item_id
    assert [k for k, *_ in in_step(shop) if k[0] != item] == []


def test_throttled_sync_paces_itself_and_completes(shop, monkeypatch):
    monkeypatch.setattr(sync.inventory, "MAX_QUANTITIES_PER_CALL", 6)  # many calls from a small catalog
    control(shop.base_url, "shopify", "plan", {"maximum": 30, "restore": 100})
    client = client_for("shopify")
    try:
        totals = sync.sync_products(None, scope="all", client=client, concurrency=4)
    finally:
        client.close()
    assert totals.failed == 0 and totals.calls >= 15
    assert client.paced_seconds > 0  # waited for the bucket instead of bouncing off it
    assert stats(shop)["throttled"] <= 2
    assert in_step(shop) == []


def test_prices_only_when_asked_and_only_changed(shop):
    sync.sync_products(None, scope="all")
    assert stats(shop)["price_writes"] == 0
    differing = sum(len(items) for items in sync.price_changes(
        list(ProductMapping.objects.values_list("pk", flat=True))).values())
    assert differing > 0
    totals = sync.sync_products(None, scope="all", prices=True)
    assert totals.prices_sent == differing and stats(shop)["price_writes"] == differing
    catalog = shop.apps["shopify"].catalog
    for m in ProductMapping.objects.select_related("nhanh_product", "shopify_variant"):
        assert float(catalog.variant(m.shopify_variant.shopify_id)["price"]) == float(m.nhanh_product.retail_price)
    again = sync.sync_products(None, scope="all", prices=True)
    assert again.prices_sent == 0 and again.price_calls == 0


def test_product_sync_job_reports(shop):
    job = sync.start_product_sync(scope="all", started_by=StartedBy.COMMAND, run_now=True)
    job = BackgroundJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.COMPLETED, job.error
    result = result_of(job)
    assert result.levels_sent > 0 and result.failed == 0 and result.synced == result.mappings


def test_the_senders_leave_the_database_to_the_jobs_thread(shop):
    """Sender threads only talk to Shopify: the health of those calls (integrations.status) is written by the
    job's thread. A sender writing on a connection of its own waited, on SQLite, for the job's transaction."""
    from django.db.backends.signals import connection_created

    from integrations import status
    from integrations.models import UpstreamStatus

    opened_on: list[str] = []

    def opened(sender, connection, **kwargs):
        opened_on.append(threading.current_thread().name)

    status.forget_written()
    UpstreamStatus.objects.filter(key="shopify").delete()
    m = ProductMapping.objects.order_by("pk").first()
    change_nhanh(m, 31010, 41)
    connection_created.connect(opened)
    try:
        totals = sync.sync_products(None, scope="all")
    finally:
        connection_created.disconnect(opened)
    assert totals.calls >= 1
    assert not [name for name in opened_on if name.startswith("stock")], opened_on
    assert UpstreamStatus.objects.get(key="shopify").ok
