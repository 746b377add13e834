"""The product sync's entry points: the mapping list's "Sync all" / "Retry failed" buttons and "Sync stock of
selected" action (permission products.sync_products), ``manage.py sync_shopify products`` (one-line errors,
non-zero exit on failure), the deliveries' admin page."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.urls import reverse

from customers.models import SyncStatus
from integrations.sandbox.server import control
from jobs.models import BackgroundJob, JobStatus
from jobs.operations import RETRY_FAILED_SYNC
from products.models import NhanhStock, NhanhWebhookDelivery, ProductMapping
from products.services.sync import PRODUCT_SYNC
from tests.products_helpers import connect, expected_levels, load_catalog, truth_by_item

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(sandbox_factory):
    server = sandbox_factory(customers=10, seed=5, products=40)
    connect(server)
    load_catalog(server)
    return server


@pytest.fixture
def eager():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def in_step(server) -> bool:
    truth = truth_by_item(server)
    return all(truth.get(k, 0) == want for k, want in expected_levels().items())


def test_buttons_and_action_start_syncs(staff_client, shop, eager, django_capture_on_commit_callbacks):
    url = reverse("admin:products_productmapping_changelist")
    html = staff_client.get(url).content.decode()
    assert html.count(reverse("admin:products_productmapping_sync_all")) == 1
    assert html.count(reverse("admin:products_productmapping_retry_failed")) == 1
    assert "Sync stock of selected to Shopify" in html
    with django_capture_on_commit_callbacks(execute=True):
        page = staff_client.post(reverse("admin:products_productmapping_sync_all"), follow=True)
    assert "Stock sync of all mapped products started as" in page.content.decode()
    job = BackgroundJob.objects.get(type=PRODUCT_SYNC)
    assert job.status == JobStatus.COMPLETED, job.error
    assert in_step(shop)

    m = ProductMapping.objects.order_by("pk").first()
    NhanhStock.objects.filter(product_id=m.nhanh_product_id, depot_id=31013).update(available=77)
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url, {"action": "sync_selected", "_selected_action": [m.pk]}, follow=True)
    job = BackgroundJob.objects.filter(type=PRODUCT_SYNC).latest("pk")
    assert job.params["ids"] == [m.pk] and job.status == JobStatus.COMPLETED
    assert in_step(shop)

    ProductMapping.objects.filter(pk=m.pk).update(sync_status=SyncStatus.FAILED, last_error="earlier")
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(reverse("admin:products_productmapping_retry_failed"), follow=True)
    retry = BackgroundJob.objects.get(type=RETRY_FAILED_SYNC)
    assert retry.params["target"] == "products" and retry.status == JobStatus.COMPLETED, retry.error
    m.refresh_from_db()
    assert m.sync_status == SyncStatus.SYNCED and m.last_error == ""
    assert staff_client.get(reverse("admin:products_productmapping_sync_all")).status_code == 405


def test_a_viewer_sees_no_sync_button_and_cannot_post(client, shop, django_user_model):
    viewer = django_user_model.objects.create_user("v", is_staff=True)
    viewer.groups.add(Group.objects.get(name="viewer"))
    client.force_login(viewer)
    html = client.get(reverse("admin:products_productmapping_changelist")).content.decode()
    assert reverse("admin:products_productmapping_sync_all") not in html
    assert client.post(reverse("admin:products_productmapping_sync_all")).status_code == 403
    assert client.post(reverse("admin:products_productmapping_retry_failed")).status_code == 403
    assert not BackgroundJob.objects.exists()


def test_deliveries_page_lists_what_nhanh_sent(staff_client, shop):
    NhanhWebhookDelivery.objects.create(event="inventoryChange", business_id="12345", digest="a" * 64,
                                        outcome="replay", detail="same body as delivery #1", product_ids=[5000000])
    html = staff_client.get(reverse("admin:products_nhanhwebhookdelivery_changelist")).content.decode()
    assert "inventoryChange" in html and "same body as delivery #1" in html and "5000000" in html


@pytest.mark.django_db(transaction=True)  # --wait runs the job on a thread with its own connection
def test_command_syncs_and_reports(shop):
    out = StringIO()
    call_command("sync_shopify", "products", "--all", "--wait", stdout=out)
    assert "0 failed" in out.getvalue() and "levels set" in out.getvalue()
    assert in_step(shop)
    out = StringIO()
    call_command("sync_shopify", "products", "--retry-failed", "--prices", "--wait", stdout=out)
    assert "prices" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_command_exits_non_zero_when_a_mapping_fails(shop):
    bad = ProductMapping.objects.select_related("shopify_variant").order_by("pk").first()
    control(shop.base_url, "shopify", "inventory_user_errors", {
        "inventory_item_ids": [bad.shopify_variant.inventory_item_id], "message": "Nope"})
    with pytest.raises(CommandError, match="1 failed"):
        call_command("sync_shopify", "products", "--all", "--wait", stdout=StringIO())


@pytest.mark.parametrize("args,message", [
    (["--all", "--retry-failed"], "choose one of --all, --retry-failed"),
    (["--ids", "999999"], "no product mapping with id 999999"),
    (["--changed-only"], "--changed-only is for customers"),
])
def test_command_refuses_bad_options_in_one_line(shop, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("sync_shopify", "products", *args, stdout=StringIO())
    assert not BackgroundJob.objects.exists()
