"""The customer pages staff use: lists, the mapping page's buttons, manual match, permissions."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from customers.job_types import CustomerJobType as JobType
from customers.models import AmbiguousMatch, CustomerMapping, MatchedBy, NhanhCustomer
from customers.services.pulls import upsert_nhanh_customers, upsert_shopify_customers
from jobs.models import BackgroundJob, JobStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers(loyalty_tiers):
    upsert_nhanh_customers([
        {"id": 1, "name": "Nguyễn Văn An", "mobile": "0912 345 678", "type": 1, "totalAmount": 7_000_000},
        {"id": 2, "name": "Trần Thị Bình", "mobile": "0903 111 222", "type": 2, "totalAmount": 500_000},
        {"id": 3, "name": "Lê Chi", "mobile": "0977 000 111", "type": 1, "totalAmount": 0},
    ])
    upsert_shopify_customers([
        {"legacyResourceId": "101", "firstName": "An", "lastName": "Nguyễn",
         "defaultPhoneNumber": {"phoneNumber": "+84912345678"}},
        {"legacyResourceId": "104", "firstName": "Bình", "lastName": "Trần",
         "defaultPhoneNumber": {"phoneNumber": "+84903111222"}},
        {"legacyResourceId": "105", "firstName": "B", "lastName": "T", "defaultAddress": {"phone": "0903111222"}},
    ])


def test_customer_lists_and_search_by_phone(staff_client, customers):
    page = staff_client.get(reverse("admin:customers_nhanhcustomer_changelist"), {"q": "+84912345678"})
    html = page.content.decode()
    assert page.status_code == 200 and "Nguyễn Văn An" in html and "Trần Thị Bình" not in html
    assert "Pull from Nhanh" in html
    page = staff_client.get(reverse("admin:customers_shopifycustomer_changelist"))
    assert page.status_code == 200 and "Pull from Shopify" in page.content.decode()
    assert staff_client.get(reverse("admin:customers_shopifycustomer_pull")).status_code == 200
    detail = staff_client.get(reverse("admin:customers_nhanhcustomer_change",
                                      args=[NhanhCustomer.objects.get(nhanh_id=1).pk]))
    assert "+84912345678" in detail.content.decode()


def test_mapping_page_buttons_run_automatch_and_dry_run(staff_client, customers,
                                                        django_capture_on_commit_callbacks):
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        url = reverse("admin:customers_customermapping_changelist")
        html = staff_client.get(url).content.decode()
        for label in ("Auto-match now", "Dry run", "Sync all matched", "Retry failed", "Match manually"):
            assert label in html
        page = staff_client.post(reverse("admin:customers_customermapping_dry_run"), follow=True)
        assert "would match 1, 1 ambiguous" in page.content.decode() and not CustomerMapping.objects.exists()
        with django_capture_on_commit_callbacks(execute=True):  # the job is sent once its row is committed
            page = staff_client.post(reverse("admin:customers_customermapping_automatch"), follow=True)
        assert "Auto-match started as" in page.content.decode()
        job = BackgroundJob.objects.filter(type=JobType.AUTO_MATCH_CUSTOMERS).latest("pk")
        assert job.status == JobStatus.COMPLETED and job.metadata["matched"] == 1
        html = staff_client.get(url, {"q": "Nguyễn"}).content.decode()
        assert "Nguyễn Văn An" in html
        amb = staff_client.get(reverse("admin:customers_ambiguousmatch_changelist")).content.decode()
        assert "Trần Thị Bình" in amb and "Trần Bình · Shopify #104" in amb and "T B · Shopify #105" in amb
        # Buttons are POST forms with CSRF; a GET does nothing.
        assert staff_client.get(reverse("admin:customers_customermapping_automatch")).status_code == 405
    finally:
        app.conf.task_always_eager = False


def test_manual_match_form_and_unmatch_action(staff_client, customers):
    url = reverse("admin:customers_customermapping_match")
    page = staff_client.post(url, {"nhanh_id": 2, "shopify_id": 105}, follow=True)
    assert "Matched" in page.content.decode()
    mapping = CustomerMapping.objects.get()
    assert mapping.matched_by == MatchedBy.MANUAL and mapping.shopify_customer.shopify_id == 105
    page = staff_client.post(url, {"nhanh_id": 3, "shopify_id": 105}, follow=True)
    assert "already matched" in page.content.decode()
    page = staff_client.post(url, {"nhanh_id": 99, "shopify_id": 105})
    assert "No pulled Nhanh customer has this id" in page.content.decode()
    staff_client.post(reverse("admin:customers_customermapping_changelist"),
                      {"action": "unmatch_selected", "_selected_action": [mapping.pk]})
    assert CustomerMapping.objects.get().is_active is False
    assert not AmbiguousMatch.objects.exists()


def test_sync_buttons_need_the_sync_permission(client, django_user_model, customers):
    user = django_user_model.objects.create_user("viewer", password="viewer-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_customermapping"))
    client.force_login(user)
    html = client.get(reverse("admin:customers_customermapping_changelist")).content.decode()
    assert "Sync all matched" not in html and "Auto-match now" not in html
    assert client.post(reverse("admin:customers_customermapping_sync_all")).status_code == 403
    assert client.post(reverse("admin:customers_customermapping_automatch")).status_code == 403
    assert client.get(reverse("admin:customers_nhanhcustomer_pull")).status_code == 403


def test_connection_admin_masks_secrets_and_keeps_them_when_left_empty(staff_client):
    from integrations.models import Connection

    conn = Connection.objects.create(system="nhanh", base_url="https://pos.open.nhanh.vn", app_id="1",
                                     business_id="2", access_token="secret-token-abcdef123456")
    url = reverse("admin:integrations_connection_change", args=[conn.pk])
    html = staff_client.get(url).content.decode()
    assert "secret-token-abcdef123456" not in html and "••••••••3456" in html
    staff_client.post(url, {"system": "nhanh", "base_url": "https://pos.open.nhanh.vn", "api_version": "3.0",
                            "app_id": "1", "business_id": "2", "access_token": "", "secret_key": "",
                            "window_seconds": 30})
    conn.refresh_from_db()
    assert conn.access_token == "secret-token-abcdef123456" and conn.api_version == "3.0"
    assert "secret-token" not in repr(conn)
    listing = staff_client.get(reverse("admin:integrations_connection_changelist")).content.decode()
    assert "secret-token" not in listing
