"""The "Test connection" admin action on Connection, against the Nhanh sandbox over real HTTP."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from integrations.clients import check_connection
from integrations.models import Connection
from integrations.nhanh.sandbox import (
    SANDBOX_ACCESS_TOKEN,
    SANDBOX_APP_ID,
    SANDBOX_BUSINESS_ID,
    SANDBOX_SECRET_KEY,
)
from integrations.sandbox.server import control

CHANGELIST = "admin:integrations_connection_changelist"


@pytest.fixture
def nhanh_sandbox(sandbox_factory):
    return sandbox_factory(only=["nhanh"], customers=20, seed=3)


def nhanh_connection(server, **overrides) -> Connection:
    values = {"system": "nhanh", "base_url": server.url_for("nhanh"), "app_id": SANDBOX_APP_ID,
              "business_id": SANDBOX_BUSINESS_ID, "access_token": SANDBOX_ACCESS_TOKEN,
              "secret_key": SANDBOX_SECRET_KEY, "requests_per_window": 150, "window_seconds": 30,
              "is_sandbox": True, **overrides}
    return Connection.objects.create(**values)


def run_action(client, *connections):
    response = client.post(reverse(CHANGELIST), {"action": "test_connection",
                                                 "_selected_action": [c.pk for c in connections]}, follow=True)
    assert response.status_code == 200
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def served(server) -> int:
    return control(server.base_url, "nhanh", "status")["requests_served"]


def test_test_connection_reports_ok_with_the_business_and_changes_nothing(staff_client, nhanh_sandbox):
    conn = nhanh_connection(nhanh_sandbox)
    before = Connection.objects.values().get(pk=conn.pk)
    shown = run_action(staff_client, conn)
    assert len(shown) == 1 and shown[0][0] == "success"
    assert shown[0][1].startswith(f"Nhanh.vn: OK: Nhanh business {SANDBOX_BUSINESS_ID}")
    assert "token valid until" in shown[0][1] and SANDBOX_ACCESS_TOKEN not in shown[0][1]
    assert served(nhanh_sandbox) == 1  # one call
    assert Connection.objects.values().get(pk=conn.pk) == before


def test_test_connection_says_what_is_wrong(staff_client, nhanh_sandbox):
    bad_token = nhanh_connection(nhanh_sandbox, access_token="expired-token")
    nowhere = Connection.objects.create(system="pancake", base_url="https://pages.fm/api/public_api/v1")
    shown = run_action(staff_client, bad_token, nowhere)
    assert [level for level, _ in shown] == ["error", "error"]
    texts = " | ".join(text for _, text in shown)
    assert "ERR_INVALID_ACCESS_TOKEN" in texts and "re-authorize" in texts
    assert "Pancake: no client for this upstream yet" in texts
    assert "expired-token" not in texts


def test_unreachable_upstream_is_reported_not_raised(db):
    conn = Connection(system="nhanh", base_url="http://127.0.0.1:9", app_id="a", business_id="1",
                      access_token="t", requests_per_window=None)
    ok, text = check_connection(conn)
    assert not ok and "cannot connect" in text


def test_user_without_change_permission_cannot_run_it(client, django_user_model, nhanh_sandbox):
    viewer = django_user_model.objects.create_user("viewer", password="viewer-pass-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client.force_login(viewer)
    conn = nhanh_connection(nhanh_sandbox)
    assert "test_connection" not in client.get(reverse(CHANGELIST)).content.decode()
    shown = run_action(client, conn)
    assert not any("OK" in text for _, text in shown)
    assert served(nhanh_sandbox) == 0  # the upstream was never called
