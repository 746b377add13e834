"""Nhanh webhooks: the verify token (a wrong or missing one is a 401 and stores nothing), bad bodies as 400 JSON,
every delivery recorded, replays harmless, stock changes coalesced into one update per product, catalog events,
and the whole path Nhanh sandbox → /webhooks/nhanh/ → Shopify sandbox over real HTTP."""

from __future__ import annotations

import json

import pytest

from integrations.sandbox.server import control
from products.models import (
    NhanhDepot,
    NhanhProduct,
    NhanhStock,
    NhanhWebhookDelivery,
    PendingStockSync,
    ProductMapping,
    WebhookOutcome,
)
from products.services import sync, webhooks
from tests.products_helpers import VERIFY_TOKEN, connect, expected_levels, load_catalog, truth_by_item

URL = "/webhooks/nhanh/"


@pytest.fixture
def shop(sandbox_factory, db):
    server = sandbox_factory(customers=10, seed=5, products=60)
    connect(server)
    load_catalog(server)
    sync.sync_products(None, scope="all")  # Shopify in step with Nhanh to begin with
    return server


def post(client, body, token=VERIFY_TOKEN, **extra):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"HTTP_AUTHORIZATION": token} if token is not None else {}
    return client.post(URL, data, content_type="application/json", **headers, **extra)


def inventory_change(server, mapping: ProductMapping, depot_id: int, available: int) -> dict:
    """What Nhanh sends after a sale: the sandbox applies it and renders the v3 record."""
    nhanh = server.apps["nhanh"].catalog
    nhanh.set_available(mapping.nhanh_product.nhanh_id, depot_id, available)
    return {"event": "inventoryChange", "businessId": 12345,
            "data": [nhanh.inventory_record(mapping.nhanh_product.nhanh_id)]}


def first_mapping() -> ProductMapping:
    return ProductMapping.objects.select_related("nhanh_product", "shopify_variant").order_by("pk").first()


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", VERIFY_TOKEN + "x", VERIFY_TOKEN[:-1]])
def test_a_wrong_or_missing_token_is_refused_and_nothing_is_stored(client, shop, token):
    m = first_mapping()
    stock_before = list(NhanhStock.objects.order_by("pk").values_list("available", flat=True))
    response = post(client, inventory_change(shop, m, 31010, 3), token=token)
    assert response.status_code == 401 and response["Content-Type"] == "application/json"
    assert not NhanhWebhookDelivery.objects.exists() and not PendingStockSync.objects.exists()
    assert list(NhanhStock.objects.order_by("pk").values_list("available", flat=True)) == stock_before


@pytest.mark.django_db
def test_no_token_configured_refuses_everything(client, shop):
    from integrations.models import Connection

    Connection.objects.filter(system="nhanh").update(webhook_verify_token="")
    assert post(client, {"event": "inventoryChange", "data": []}, token="").status_code == 401
    assert post(client, {"event": "inventoryChange", "data": []}, token="anything-at-all-123").status_code == 401
    assert not NhanhWebhookDelivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'{"data": []}', b'{"event": 5}', b"\xff\xfe"])
def test_bad_bodies_are_400_json_never_500(client, shop, body):
    response = post(client, body)
    assert response.status_code == 400 and "error" in response.json()
    assert not NhanhWebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_other_methods_are_405_json(client, shop):
    response = client.get(URL, HTTP_AUTHORIZATION=VERIFY_TOKEN)
    assert response.status_code == 405 and response.json()["error"]


@pytest.mark.django_db
def test_inventory_change_is_recorded_stored_and_synced(client, shop, django_capture_on_commit_callbacks):
    m = first_mapping()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post(client, inventory_change(shop, m, 31013, 42))
    assert response.status_code == 200 and len(queued) == 1
    delivery = NhanhWebhookDelivery.objects.get()
    assert (delivery.event, delivery.outcome, delivery.business_id) == ("inventoryChange", "queued", "12345")
    assert delivery.product_ids == [m.nhanh_product.nhanh_id] and len(delivery.digest) == 64

    with django_capture_on_commit_callbacks(execute=False) as drains:
        assert webhooks.process_delivery(delivery.pk) == WebhookOutcome.PROCESSED
    assert len(drains) == 1
    assert webhooks.process_delivery(delivery.pk) == "not queued"  # a redelivered task does nothing
    assert NhanhStock.objects.get(product=m.nhanh_product, depot_id=31013).available == 42
    assert list(PendingStockSync.objects.values_list("mapping_id", flat=True)) == [m.pk]

    before = control(shop.base_url, "shopify", "stats")["result"]
    result = webhooks.drain_pending_syncs()
    assert result["claimed"] == 1 and not PendingStockSync.objects.exists()
    after = control(shop.base_url, "shopify", "stats")["result"]
    assert after["level_writes"] - before["level_writes"] == 1  # just that level
    item = m.shopify_variant.inventory_item_id
    assert truth_by_item(shop)[(item, 71_000_000_003)] == 42


@pytest.mark.django_db
def test_a_replayed_delivery_changes_nothing_twice(client, shop, django_capture_on_commit_callbacks):
    m = first_mapping()
    body = json.dumps(inventory_change(shop, m, 31010, 9)).encode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first, second = post(client, body), post(client, body)
    assert first.status_code == second.status_code == 200
    assert second.json()["outcome"] == WebhookOutcome.REPLAY
    assert len(queued) == 1  # only the first is processed
    deliveries = list(NhanhWebhookDelivery.objects.order_by("pk"))
    assert [d.is_first for d in deliveries] == [True, False]
    assert f"#{deliveries[0].pk}" in deliveries[1].detail
    webhooks.process_delivery(deliveries[0].pk)
    assert webhooks.process_delivery(deliveries[1].pk) == "not queued"
    # A later stock change of the same product (another body) is no replay.
    with django_capture_on_commit_callbacks(execute=False):
        third = post(client, inventory_change(shop, m, 31010, 8))
    assert third.json()["outcome"] == WebhookOutcome.QUEUED


@pytest.mark.django_db
def test_a_burst_for_one_product_is_one_update(client, shop, django_capture_on_commit_callbacks):
    m = first_mapping()
    with django_capture_on_commit_callbacks(execute=False):
        for available in range(20, 30):  # ten sales/receipts in a row
            post(client, inventory_change(shop, m, 31012, available))
    deliveries = NhanhWebhookDelivery.objects.filter(outcome=WebhookOutcome.QUEUED)
    assert deliveries.count() == 10
    with django_capture_on_commit_callbacks(execute=False) as drains:
        for d in deliveries.order_by("pk"):  # in arrival order
            webhooks.process_delivery(d.pk)
    assert len(drains) == 10 and PendingStockSync.objects.count() == 1
    before = control(shop.base_url, "shopify", "stats")["result"]
    results = [webhooks.drain_pending_syncs() for _ in drains]  # every scheduled drain runs
    after = control(shop.base_url, "shopify", "stats")["result"]
    assert [r["claimed"] for r in results] == [1] + [0] * 9
    assert after["inventory_calls_applied"] - before["inventory_calls_applied"] == 1
    assert after["level_writes"] - before["level_writes"] == 1
    assert truth_by_item(shop)[(m.shopify_variant.inventory_item_id, 71_000_000_002)] == 29


@pytest.mark.django_db
def test_a_new_depot_is_recorded_and_product_events_update_the_catalog(client, shop,
                                                                       django_capture_on_commit_callbacks):
    m = first_mapping()
    record = shop.apps["nhanh"].catalog.inventory_record(m.nhanh_product.nhanh_id)
    record["depots"].append({**record["depots"][0], "id": 39999, "available": 5.0})
    new = {**shop.apps["nhanh"].catalog.product_record(m.nhanh_product.nhanh_id), "id": 9_999_999,
           "code": " NEW-sku ", "name": "Hàng mới", "parentId": None}
    events = [{"event": "inventoryChange", "businessId": 12345, "data": [record]},
              {"event": "productAdd", "businessId": 12345, "data": new},
              {"event": "productUpdate", "businessId": 12345, "data": {**new, "name": "Hàng mới (sửa)"}},
              {"event": "productDelete", "businessId": 12345, "data": [m.nhanh_product.nhanh_id]},
              {"event": "orderAdd", "businessId": 12345, "data": {}},
              {"event": "inventoryChange", "businessId": 999, "data": [record]}]
    with django_capture_on_commit_callbacks(execute=False):
        for event in events:
            assert post(client, event).status_code == 200
    with django_capture_on_commit_callbacks(execute=False):
        for d in NhanhWebhookDelivery.objects.filter(outcome=WebhookOutcome.QUEUED).order_by("pk"):
            assert webhooks.process_delivery(d.pk) == WebhookOutcome.PROCESSED, d.detail
    assert NhanhDepot.objects.filter(depot_id=39999, location__isnull=True).exists()  # staff map it later
    added = NhanhProduct.objects.get(nhanh_id=9_999_999)
    assert (added.name, added.sku_key) == ("Hàng mới (sửa)", "new-sku")
    m.nhanh_product.refresh_from_db()
    assert m.nhanh_product.status == 3
    assert not NhanhStock.objects.filter(product=m.nhanh_product, available__gt=0).exists()
    outcomes = dict(NhanhWebhookDelivery.objects.values_list("event", "outcome").order_by("pk"))
    ignored = NhanhWebhookDelivery.objects.filter(outcome=WebhookOutcome.IGNORED).values_list("detail", flat=True)
    assert outcomes["orderAdd"] == WebhookOutcome.IGNORED and len(ignored) == 2
    assert any("businessId 999" in d for d in ignored)


@pytest.mark.django_db(transaction=True)
def test_the_nhanh_sandbox_sends_webhooks_that_reach_shopify(live_server, sandbox_factory, settings):
    """Nhanh sandbox → POST /webhooks/nhanh/ (a live server) → task → product sync → Shopify sandbox."""
    from config.celery import app

    server = sandbox_factory(customers=10, seed=5, products=60)
    connect(server)
    load_catalog(server)
    sync.sync_products(None, scope="all")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        mappings = list(ProductMapping.objects.select_related("nhanh_product").order_by("pk")[:3])
        changes = [{"product_id": m.nhanh_product.nhanh_id, "depot_id": 31011, "available": 60 + i}
                   for i, m in enumerate(mappings)]
        answers = control(server.base_url, "nhanh", "webhooks", {
            "url": f"{live_server.url}{URL}", "token": VERIFY_TOKEN, "changes": changes})["result"]
        assert [a["status"] for a in answers] == [200]
        refused = control(server.base_url, "nhanh", "webhooks", {
            "url": f"{live_server.url}{URL}", "token": "not-the-token-000000",
            "product_ids": [changes[0]["product_id"]]})
        assert [a["status"] for a in refused["result"]] == [401]
    finally:
        settings.CELERY_TASK_ALWAYS_EAGER = False
        app.conf.task_always_eager = False
    assert NhanhWebhookDelivery.objects.get().outcome == WebhookOutcome.PROCESSED
    truth = truth_by_item(server)
    assert [k for k, want in expected_levels().items() if truth.get(k, 0) != want] == []
    assert control(server.base_url, "nhanh", "products")[0]["code"] is not None  # the truth endpoint is a list


@pytest.mark.django_db
def test_an_older_delivery_processed_late_never_overwrites_newer_stock(client, shop,
                                                                      django_capture_on_commit_callbacks):
    m = first_mapping()
    with django_capture_on_commit_callbacks(execute=False):
        older = post(client, inventory_change(shop, m, 31012, 5)).json()["delivery"]
        newer = post(client, inventory_change(shop, m, 31012, 6)).json()["delivery"]
    with django_capture_on_commit_callbacks(execute=False):
        webhooks.process_delivery(newer)  # another worker got the newer one first
        webhooks.process_delivery(older)
    assert NhanhStock.objects.get(product=m.nhanh_product, depot_id=31012).available == 6
    assert "skipped" in NhanhWebhookDelivery.objects.get(pk=older).detail
