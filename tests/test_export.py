"""Export of the admin lists (hub/export.py, django-import-export): the rows of a filtered or searched list are the
rows on screen, in order; the export permission; CSV streamed (200,000 rows without holding them in memory); XLSX
for small lists."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.forms import BooleanField
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.job_types import CustomerJobType
from customers.models import CustomerMapping, NhanhCustomer, ShopifyCustomer, SyncStatus
from hub import export
from jobs import services
from jobs.models import BackgroundJob, JobStatus, StartedBy
from products.models import NhanhProduct, ProductMapping, ShopifyProduct, ShopifyVariant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_eager_tasks(settings):
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False


def user_in(django_user_model, role: str):
    user = django_user_model.objects.create_user(role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def export_csv(client: Client, model: str, query: str = "", fmt: str = "0"):
    """Open the Export page of ``model``'s list with the list's query string and submit it (all columns)."""
    url = reverse(f"admin:{model.replace('.', '_')}_export") + (f"?{query}" if query else "")
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["form"]
    data = {name: "on" for name, field in form.fields.items() if isinstance(field, BooleanField)}
    data.update(resource="0", format=fmt)
    return client.post(url, data)


def rows_of(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def on_screen(client: Client, model: str, query: str = "") -> list:
    response = client.get(reverse(f"admin:{model.replace('.', '_')}_changelist") + (f"?{query}" if query else ""))
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def make_mappings(n: int = 12):
    now = timezone.now()
    nhanh = NhanhCustomer.objects.bulk_create(
        [NhanhCustomer(nhanh_id=i, name=f"Nguyễn Văn {i}", mobile=f"09{i:08d}", payload_hash="x",
                       total_spent=i * 1_000_000) for i in range(1, n + 1)])
    shopify = ShopifyCustomer.objects.bulk_create(
        [ShopifyCustomer(shopify_id=500 + i, first_name=f"V{i}", email=f"v{i}@example.com", payload_hash="x")
         for i in range(1, n + 1)])
    statuses = [SyncStatus.SYNCED, SyncStatus.FAILED, SyncStatus.PENDING]
    return CustomerMapping.objects.bulk_create([
        CustomerMapping(nhanh_customer=nhanh[i], shopify_customer=shopify[i], matched_by="phone",
                        sync_status=statuses[i % 3], synced_at=now - timedelta(minutes=i),
                        last_error=f"userErrors: value {i} is invalid" if statuses[i % 3] == SyncStatus.FAILED else "")
        for i in range(n)])


# --- the rows on screen -------------------------------------------------------------------------------------------
def test_a_filtered_mapping_list_exports_the_rows_on_screen_with_errors(django_user_model):
    make_mappings()
    client = logged_in(user_in(django_user_model, "operator"))
    query = "sync_status__exact=failed&is_active__exact=1"
    shown = on_screen(client, "customers.customermapping", query)
    rows = rows_of(export_csv(client, "customers.customermapping", query))
    header, body = rows[0], rows[1:]
    assert header[0] == "Mapping" and "Last error" in header and "Sync status" in header
    assert [int(r[0]) for r in body] == [m.pk for m in shown] and len(body) == 4
    errors = [r[header.index("Last error")] for r in body]
    assert all(e.startswith("userErrors: value") for e in errors)
    assert {r[header.index("Sync status")] for r in body} == {"Failed"}
    assert "Nguyễn Văn" in body[0][header.index("Nhanh name")]  # Vietnamese survives (UTF-8)


def test_a_searched_customer_list_exports_the_rows_on_screen(django_user_model):
    make_mappings()
    client = logged_in(user_in(django_user_model, "operator"))
    for query in ("q=Nguyen", "q=nguyễn+văn+1", ""):
        shown = on_screen(client, "customers.nhanhcustomer", query)
        body = rows_of(export_csv(client, "customers.nhanhcustomer", query))[1:]
        assert [int(r[0]) for r in body] == [c.nhanh_id for c in shown], query
        assert body
    assert len(rows_of(export_csv(client, "customers.nhanhcustomer", "q=Nguyen+Van+12"))) == 2  # header + 1


def test_a_filtered_job_list_exports_the_rows_on_screen(django_user_model):
    for i in range(6):
        job = services.create_job(CustomerJobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.SYSTEM)
        if i % 2:
            BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error=f"boom {i}\nTraceback …")
    client = logged_in(user_in(django_user_model, "operator"))
    shown = on_screen(client, "jobs.backgroundjob", "status__exact=FAILED")
    rows = rows_of(export_csv(client, "jobs.backgroundjob", "status__exact=FAILED"))
    assert [int(r[0]) for r in rows[1:]] == [j.pk for j in shown] and len(shown) == 3
    error_col = rows[0].index("Error")
    assert all(r[error_col].startswith("boom") and "Traceback" not in r[error_col] for r in rows[1:])


def test_products_and_product_mappings_export(django_user_model):
    products = NhanhProduct.objects.bulk_create(
        [NhanhProduct(nhanh_id=i, code=f"SKU-{i}", name=f"Áo {i}", payload_hash="x") for i in range(1, 6)])
    sp = ShopifyProduct.objects.create(shopify_id=1, title="Áo", payload_hash="x")
    variant = ShopifyVariant.objects.create(shopify_id=11, product=sp, sku="SKU-1", payload_hash="x")
    ProductMapping.objects.create(nhanh_product=products[0], shopify_variant=variant, matched_by="sku",
                                  sync_status=SyncStatus.FAILED, last_error="inventorySetQuantities: bad")
    client = logged_in(user_in(django_user_model, "operator"))
    body = rows_of(export_csv(client, "products.nhanhproduct"))[1:]
    assert sorted(int(r[0]) for r in body) == [1, 2, 3, 4, 5]
    rows = rows_of(export_csv(client, "products.productmapping", "sync_status__exact=failed")
                   if "sync_status" in str(on_screen(client, "products.productmapping"))
                   else export_csv(client, "products.productmapping"))
    assert rows[1][rows[0].index("Last error")] == "inventorySetQuantities: bad"
    assert rows_of(export_csv(client, "products.shopifyvariant"))[1][3] == "SKU-1"


# --- permission ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(m.lower() for m in export.EXPORTS))
def test_export_needs_the_export_permission(django_user_model, model):
    viewer = logged_in(user_in(django_user_model, "viewer"))
    operator = logged_in(user_in(django_user_model, "operator"))
    url = reverse(f"admin:{model.replace('.', '_')}_export")
    changelist = reverse(f"admin:{model.replace('.', '_')}_changelist")
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, {"resource": "0", "format": "0"}).status_code == 403
    assert 'class="export_link"' not in viewer.get(changelist).content.decode()
    assert operator.get(url).status_code == 200
    assert 'class="export_link"' in operator.get(changelist).content.decode()


def test_the_export_permission_alone_is_not_enough(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("exporter", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="export_nhanhcustomer"))
    assert logged_in(user).get(reverse("admin:customers_nhanhcustomer_export")).status_code == 403


def test_anonymous_and_non_staff_are_sent_away(django_user_model):
    url = reverse("admin:customers_customermapping_export")
    response = Client().get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    shopper = django_user_model.objects.create_user("shopper")
    assert logged_in(shopper).get(url).status_code == 302


# --- size ---------------------------------------------------------------------------------------------------------
def insert_nhanh_customers(n: int) -> None:
    table = NhanhCustomer._meta.db_table
    columns = "raw, payload_hash, created_at, updated_at, nhanh_id, name, mobile, email, address, total_spent"
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT '{{}}', 'x', now(), now(), g, 'Khách hàng ' || g, "
                        f"'09' || lpad(g::text, 8, '0'), '', 'Hà Nội', g * 1000 FROM generate_series(1, %s) g", [n])
        else:
            cur.execute(f"WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < %s) "
                        f"INSERT INTO {table} ({columns}) SELECT '{{}}', 'x', datetime('now'), datetime('now'), g, "
                        f"'Khách hàng ' || g, printf('09%%08d', g), '', 'Hà Nội', g * 1000 FROM c", [n])


def test_200k_rows_stream_without_being_held_in_memory(django_user_model):
    n = 200_000
    insert_nhanh_customers(n)
    client = logged_in(user_in(django_user_model, "operator"))
    response = export_csv(client, "customers.nhanhcustomer")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="NhanhCustomer-' in response["Content-Disposition"]
    import psutil

    process = psutil.Process()
    before = peak = process.memory_info().rss
    lines = size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
        if lines % 10_000 == 0:
            peak = max(peak, process.memory_info().rss)
    assert lines == n + 1  # the header and every row
    # The file is ~12 MB; 200,000 model instances or a tablib dataset of them would take hundreds of MB. Streamed,
    # one chunk of 2,000 rows is alive at a time.
    assert size > 10_000_000
    assert peak - before < 60_000_000, f"memory grew {(peak - before) / 1e6:.1f} MB streaming {size / 1e6:.1f} MB"


def test_xlsx_for_small_lists_and_a_clear_refusal_for_large_ones(django_user_model, monkeypatch):
    make_mappings()
    client = logged_in(user_in(django_user_model, "operator"))
    response = export_csv(client, "customers.customermapping", fmt="1")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet.max_row == 13  # header + 12 mappings
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 5)
    refused = export_csv(client, "customers.customermapping", fmt="1")
    assert refused.status_code == 200 and "export it as CSV" in refused.content.decode()
