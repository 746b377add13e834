"""The overview on the admin home (hub/overview.py): empty and full data, permission-trimmed, a fixed number of
queries whatever the data size, its JSON refresh, and the connection health the clients record
(integrations/status.py) — against the Nhanh sandbox over real HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config.schedules import install_schedules
from customers.job_types import CustomerJobType
from customers.models import AmbiguousMatch, CustomerMapping, NhanhCustomer, ShopifyCustomer, SyncStatus
from hub.overview import build_overview
from integrations import status
from integrations.models import Connection, UpstreamStatus
from jobs import services
from jobs.models import BackgroundJob, JobStatus, StartedBy
from products.models import NhanhProduct, ProductMapping, ShopifyProduct, ShopifyVariant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_eager_tasks(settings):
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    status.forget_written()


def staff(django_user_model, name, *, groups=(), perms=(), superuser=False):
    if superuser:
        return django_user_model.objects.create_superuser(name, f"{name}@example.com", None)
    user = django_user_model.objects.create_user(name, is_staff=True)
    for g in groups:
        user.groups.add(Group.objects.get(name=g))
    for p in perms:
        app_label, codename = p.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_data(n: int) -> dict:
    """n customers per system (n ≥ 3): two thirds matched, one failed sync, one ambiguous; products; jobs."""
    now = timezone.now()
    nhanh = NhanhCustomer.objects.bulk_create(
        [NhanhCustomer(nhanh_id=i, name=f"Khách {i}", mobile=f"09{i:08d}", payload_hash="x") for i in range(1, n + 1)])
    shopify = ShopifyCustomer.objects.bulk_create(
        [ShopifyCustomer(shopify_id=1000 + i, first_name=f"K{i}", payload_hash="x") for i in range(1, n + 1)])
    matched = (2 * n) // 3
    CustomerMapping.objects.bulk_create([
        CustomerMapping(nhanh_customer=nhanh[i], shopify_customer=shopify[i], matched_by="phone",
                        sync_status=SyncStatus.SYNCED if i else SyncStatus.FAILED,
                        synced_at=now - timedelta(minutes=i) if i else None,
                        last_error="" if i else "metafieldsSet: value is invalid")
        for i in range(matched)])
    AmbiguousMatch.objects.create(nhanh_customer=nhanh[-1], phones=["+84900000001"], shopify_candidates=[1, 2])
    products = NhanhProduct.objects.bulk_create(
        [NhanhProduct(nhanh_id=i, code=f"SKU-{i}", payload_hash="x") for i in range(1, n + 1)])
    sp = ShopifyProduct.objects.create(shopify_id=1, title="Áo", payload_hash="x")
    variants = ShopifyVariant.objects.bulk_create(
        [ShopifyVariant(shopify_id=10 + i, product=sp, sku=f"SKU-{i}", payload_hash="x") for i in range(1, n + 1)])
    ProductMapping.objects.create(nhanh_product=products[0], shopify_variant=variants[0], matched_by="sku",
                                  sync_status=SyncStatus.PENDING)
    jobs = {}
    for i in range(max(n // 10, 1)):
        done = services.create_job(CustomerJobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.SYSTEM)
        BackgroundJob.objects.filter(pk=done.pk).update(status=JobStatus.COMPLETED, processed=n, successful=n - i,
                                                        failed=i, completed_at=now - timedelta(hours=1))
    jobs["pull"] = done
    running = services.create_job(CustomerJobType.PULL_SHOPIFY_CUSTOMERS, started_by=StartedBy.SYSTEM)
    BackgroundJob.objects.filter(pk=running.pk).update(status=JobStatus.RUNNING, total=200, processed=50,
                                                       started_at=now - timedelta(seconds=30), heartbeat_at=now)
    jobs["running"] = running
    stale = services.create_job(CustomerJobType.AUTO_MATCH_CUSTOMERS, started_by=StartedBy.SYSTEM)
    BackgroundJob.objects.filter(pk=stale.pk).update(status=JobStatus.RUNNING, started_at=now - timedelta(hours=1),
                                                     heartbeat_at=now - timedelta(minutes=30))
    jobs["stale"] = stale
    failed = services.create_job(CustomerJobType.CUSTOMER_SYNC, started_by=StartedBy.SYSTEM)
    BackgroundJob.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED, error="Shopify said no\nTraceback …",
                                                      completed_at=now)
    jobs["failed"] = failed
    old = services.create_job(CustomerJobType.CUSTOMER_SYNC, started_by=StartedBy.SYSTEM)
    BackgroundJob.objects.filter(pk=old.pk).update(status=JobStatus.FAILED, error="long ago",
                                                   created_at=now - timedelta(days=2))
    Connection.objects.get_or_create(system="nhanh", defaults={"base_url": "https://pos.open.nhanh.vn",
                                                               "is_sandbox": True})
    Connection.objects.get_or_create(system="shopify", defaults={"base_url": "https://shop.myshopify.com",
                                                                 "access_token": "shpat_x"})
    UpstreamStatus.objects.get_or_create(key="nhanh", defaults={"ok": True, "last_ok_at": now})
    UpstreamStatus.objects.get_or_create(key="shopify", defaults={
        "ok": False, "failing_since": now - timedelta(hours=2), "last_error": "shopify: credentials rejected [401]",
        "last_failure_at": now})
    install_schedules()
    return jobs


# --- rendering --------------------------------------------------------------------------------------------------
def test_empty_overview_renders_every_section_for_a_superuser(django_user_model):
    boss = staff(django_user_model, "boss", superuser=True)
    html = logged_in(boss).get(reverse("admin:index")).content.decode()
    for section in ("sb-ov-connections", "sb-ov-data", "sb-ov-jobs", "sb-ov-schedules"):
        assert f'id="{section}"' in html
    assert "No connection is configured yet." in html
    assert "Nothing is running." in html
    assert "No periodic task is enabled." in html
    assert 'id="content-main"' in html  # the app list is still there, below
    assert html.index('id="sb-overview"') < html.index('id="content-main"')


def test_full_overview_shows_health_counts_jobs_and_schedules(django_user_model):
    jobs = make_data(30)
    boss = staff(django_user_model, "boss", superuser=True)
    html = logged_in(boss).get(reverse("admin:index")).content.decode()
    # Connections: health, since, error, last pull with counts, the test button posting the admin action.
    assert "shopify: credentials rejected [401]" in html and "Failing" in html
    assert re.search(r"since \d\d/\d\d/\d{4} \d\d:\d\d", html)
    assert f'/admin/jobs/backgroundjob/{jobs["pull"].pk}/change/' in html
    assert "28 ok, 2 failed" in html  # the newest completed Nhanh pull (i = 2 of 0..2)
    assert 'name="action" value="test_connection"' in html
    # Data: counts, matched / unmatched / ambiguous, sync links filtered.
    data = build_overview(boss)["data"]
    customers = next(g for g in data["groups"] if g["key"] == "customers")
    assert [t["figure"].value for t in customers["tables"]] == [30, 30, 0]
    m = customers["mapping"]
    assert (m["matched"].value, m["unmatched"].value, m["failed"].value, m["pending"].value) == (20, 10, 1, 0)
    assert customers["ambiguous"]["figure"].value == 1
    products = next(g for g in data["groups"] if g["key"] == "products")
    assert products["mapping"]["pending"].value == 1
    assert "/admin/customers/customermapping/?is_active__exact=1&amp;sync_status__exact=failed" in html
    # Jobs: running with progress, stale, failed in 24 h only.
    assert "50 / 200 (25.0%)" in html
    section = build_overview(boss)["jobs"]
    assert [r["job"].pk for r in section["stale"]] == [jobs["stale"].pk]
    assert [r["job"].pk for r in section["failed"]] == [jobs["failed"].pk]
    assert "Shopify said no" in html and "Traceback" not in html and "long ago" not in html
    # Schedules: enabled with a next run in local time; disabled workflows with their one-line note.
    schedules = build_overview(boss)["schedules"]
    assert schedules["enabled"] and all(r["next_run"] is not None for r in schedules["enabled"])
    assert all(r["next_run"].utcoffset() == timedelta(hours=7) for r in schedules["enabled"])
    assert schedules["disabled"] and all(r["note"] and "\n" not in r["note"] for r in schedules["disabled"])
    assert "Asia/Ho_Chi_Minh" in html


def test_app_index_pages_do_not_show_the_overview(django_user_model):
    boss = staff(django_user_model, "boss", superuser=True)
    html = logged_in(boss).get(reverse("admin:app_list", args=["customers"])).content.decode()
    assert 'id="sb-overview"' not in html


# --- permissions --------------------------------------------------------------------------------------------------
def test_a_viewer_sees_everything_but_cannot_test_connections(django_user_model):
    make_data(6)
    viewer = staff(django_user_model, "viewer", groups=["viewer"])
    data = build_overview(viewer)
    assert all(data[s] for s in ("connections", "data", "jobs", "schedules"))
    html = logged_in(viewer).get(reverse("admin:index")).content.decode()
    assert "test_connection" not in html and "Test connection" not in html
    manager = staff(django_user_model, "manager", groups=["manager"])
    assert "Test connection" in logged_in(manager).get(reverse("admin:index")).content.decode()


def test_a_viewer_of_jobs_only_sees_jobs(django_user_model):
    jobs = make_data(6)
    user = staff(django_user_model, "jobwatcher", perms=["jobs.view_backgroundjob"])
    data = build_overview(user)
    assert data["jobs"] and not (data["connections"] or data["data"] or data["schedules"])
    html = logged_in(user).get(reverse("admin:index")).content.decode()
    assert 'id="sb-ov-jobs"' in html and f"#{jobs['running'].pk}" in html
    for hidden in ("sb-ov-connections", "sb-ov-data", "sb-ov-schedules", "credentials rejected"):
        assert hidden not in html


def test_data_is_trimmed_per_model(django_user_model):
    make_data(6)
    user = staff(django_user_model, "nhanhonly", perms=["customers.view_nhanhcustomer"])
    data = build_overview(user)
    assert data["jobs"] is None and data["connections"] is None
    [group] = data["data"]["groups"]
    assert [str(t["label"]) for t in group["tables"]] == ["Nhanh customers"]
    assert "mapping" not in group and "ambiguous" not in group


def test_connection_rows_without_job_permission_show_no_pulls(django_user_model):
    make_data(6)
    user = staff(django_user_model, "connonly", perms=["integrations.view_connection"])
    section = build_overview(user)["connections"]
    assert section["rows"] and all(r["pulls"] == [] for r in section["rows"]) and not section["may_test"]


def test_nothing_allowed_says_so(django_user_model):
    user = staff(django_user_model, "nobody")
    html = logged_in(user).get(reverse("admin:index")).content.decode()
    assert "You have no permission to see any part of the overview." in html


def test_json_refresh_is_staff_only_and_trimmed(django_user_model):
    jobs = make_data(6)
    url = reverse("hub-overview")
    assert Client().get(url).status_code == 401
    shopper = django_user_model.objects.create_user("shopper")
    assert logged_in(shopper).get(url).status_code == 403
    user = staff(django_user_model, "jobwatcher", perms=["jobs.view_backgroundjob"])
    body = logged_in(user).get(url).json()
    assert body["any_active"] is True and body["refresh_seconds"] == 2
    assert f"#{jobs['running'].pk}" in body["html"] and "sb-ov-data" not in body["html"]
    assert logged_in(user).post(url).status_code == 405


# --- cost -----------------------------------------------------------------------------------------------------
def queries_for(user) -> int:
    with CaptureQueriesContext(connection) as ctx:
        build_overview(user)
    return len(ctx.captured_queries)


def test_query_count_is_fixed_whatever_the_data_size(django_user_model):
    boss = staff(django_user_model, "boss", superuser=True)
    empty = queries_for(boss)
    make_data(3)
    small = queries_for(boss)
    BackgroundJob.objects.all().delete()
    NhanhCustomer.objects.all().delete()
    ShopifyCustomer.objects.all().delete()
    NhanhProduct.objects.all().delete()
    ShopifyProduct.objects.all().delete()
    make_data(300)
    large = queries_for(boss)
    assert empty == small == large, (empty, small, large)
    assert large <= 15
    viewer_of_jobs = staff(django_user_model, "jobwatcher", perms=["jobs.view_backgroundjob"])
    viewer_of_jobs.get_all_permissions()  # (the admin has read them for the page already)
    assert queries_for(viewer_of_jobs) == 2  # a section nobody may see costs nothing


def test_the_home_page_itself_is_bounded(django_user_model):
    boss = staff(django_user_model, "boss", superuser=True)
    client = logged_in(boss)
    client.get(reverse("admin:index"))  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as small:
        client.get(reverse("admin:index"))
    make_data(60)
    with CaptureQueriesContext(connection) as large:
        client.get(reverse("admin:index"))
    assert len(small) == len(large), [q["sql"] for q in large.captured_queries]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_large_tables_are_estimated_not_counted(django_user_model):
    from hub import overview

    NhanhCustomer.objects.bulk_create(
        [NhanhCustomer(nhanh_id=i, payload_hash="x") for i in range(overview.EXACT_BELOW + 50)], batch_size=5000)
    with connection.cursor() as cur:
        cur.execute(f"ANALYZE {NhanhCustomer._meta.db_table}")
    figure = overview.table_sizes([NhanhCustomer])[NhanhCustomer]
    assert figure.estimated and abs(figure.value - (overview.EXACT_BELOW + 50)) < 500
    boss = staff(django_user_model, "boss", superuser=True)
    assert "≈ " in logged_in(boss).get(reverse("admin:index")).content.decode()


# --- connection health recorded by the clients ---------------------------------------------------------------------
def test_status_is_written_on_a_change_and_at_most_once_a_minute(monkeypatch):
    assert status.record_call("nhanh", True) is True
    assert status.record_call("nhanh", True) is False  # same state within the minute: nothing written
    assert status.record_call("nhanh", False, "nhanh: server error HTTP 502") is True
    first = UpstreamStatus.objects.get(key="nhanh")
    assert not first.ok and first.failing_since and "502" in first.last_error
    status.forget_written()
    assert status.record_call("nhanh", False, "nhanh: timed out") is True
    again = UpstreamStatus.objects.get(key="nhanh")
    assert again.failing_since == first.failing_since and again.last_error == "nhanh: timed out"
    monkeypatch.setattr(status, "WRITE_EVERY_SECONDS", 0.0)
    assert status.record_call("nhanh", True) is True
    ok = UpstreamStatus.objects.get(key="nhanh")
    assert ok.ok and ok.failing_since is None and ok.last_error == "" and ok.last_ok_at


def test_real_calls_record_the_health_of_their_upstream(sandbox_factory, django_user_model):
    from integrations.clients import client_for
    from tests.test_connection_admin import nhanh_connection

    server = sandbox_factory(only=["nhanh"], customers=5, seed=3)
    conn = nhanh_connection(server)
    client = client_for("nhanh")
    try:
        client.test_connection()
    finally:
        client.close()
    assert UpstreamStatus.objects.get(key="nhanh").ok
    Connection.objects.filter(pk=conn.pk).update(access_token="revoked")
    client = client_for("nhanh", max_attempts=1)
    with pytest.raises(Exception):  # noqa: B017 - the typed error is the client's business
        client.test_connection()
    client.close()
    row = UpstreamStatus.objects.get(key="nhanh")
    assert not row.ok and row.failing_since and row.last_error
    boss = staff(django_user_model, "boss", superuser=True)
    [nhanh] = [r for r in build_overview(boss)["connections"]["rows"] if r["system"] == "nhanh"]
    assert nhanh["status"]["state"] == "failing" and nhanh["status"]["error"] == row.last_error


def test_the_test_button_runs_the_connections_action_and_records_its_outcome(sandbox_factory, django_user_model):
    from django.contrib.messages import get_messages

    from tests.test_connection_admin import nhanh_connection

    server = sandbox_factory(only=["nhanh"], customers=5, seed=3)
    conn = nhanh_connection(server)
    manager = staff(django_user_model, "manager", groups=["manager"])
    client = logged_in(manager)
    html = client.get(reverse("admin:index")).content.decode()
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', html, re.S)
    assert form and form.group(1) == reverse("admin:integrations_connection_changelist")
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(2)))
    assert fields["action"] == "test_connection" and fields["_selected_action"] == str(conn.pk)
    response = client.post(form.group(1), fields, follow=True)
    shown = [m.message for m in get_messages(response.wsgi_request)]
    assert any(m.startswith("Nhanh.vn: OK") for m in shown), shown
    assert UpstreamStatus.objects.get(key="nhanh").ok
    # A viewer has no button, and posting the action anyway is refused by the admin (no change permission).
    viewer = logged_in(staff(django_user_model, "viewer", groups=["viewer"]))
    refused = viewer.post(form.group(1), fields, follow=True)
    assert not any("OK" in m.message for m in get_messages(refused.wsgi_request))


def test_a_pancake_page_and_a_shopee_shop_report_under_their_own_key():
    from integrations.pancake.client import PancakeClient

    client = PancakeClient("https://pages.fm")
    assert client.status_key_for("/api/public_api/v1/pages/105/page_customers") is None  # not asked to record
    client.status_key = "pancake"
    assert client.status_key_for("/api/public_api/v1/pages/105/page_customers") == "pancake:105"
    assert client.status_key_for("/api/v1/pages/106/generate_page_access_token") == "pancake:106"
    assert client.status_key_for("/api/v1/pages") == "pancake"
    client.close()


def test_shop_rows_and_page_rows_read_their_keys(django_user_model):
    from ads.models import Shop
    from pancake.models import PancakePage

    PancakePage.objects.create(page_id="105", name="Shop Hoa")
    Shop.objects.create(shop_id=600001, name="Shopee Hoa", partner_id=1, partner_key="k")
    UpstreamStatus.objects.create(key="pancake:105", ok=False, failing_since=timezone.now(),
                                  last_error="pancake: the user access token expired")
    UpstreamStatus.objects.create(key="shopee:600001", ok=True, last_ok_at=timezone.now())
    boss = staff(django_user_model, "boss", superuser=True)
    rows = {r["kind"]: r for r in build_overview(boss)["connections"]["rows"]}
    assert rows["page"]["status"]["state"] == "failing" and "expired" in rows["page"]["status"]["error"]
    assert rows["shop"]["status"]["state"] == "ok"
