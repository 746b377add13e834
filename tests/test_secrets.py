"""Secrets never leave for another host, never sit in plain text, and never ride in a URL."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from integrations.admin import ConnectionForm
from integrations.errors import RequestRejected
from integrations.models import Connection
from integrations.nhanh.client import NhanhClient

pytestmark = pytest.mark.django_db


def make(**fields) -> Connection:
    return Connection.objects.create(**{"system": "nhanh", "base_url": "https://pos.open.nhanh.vn",
                                        "app_id": "1", "business_id": "2", "access_token": "tok-live-123456",
                                        "secret_key": "sk-live-654321", **fields})


def form_data(conn: Connection, **changes) -> dict:
    data = {"system": conn.system, "base_url": conn.base_url, "api_version": "3.0", "app_id": conn.app_id,
            "business_id": conn.business_id, "access_token": "", "secret_key": "", "client_id": "",
            "client_secret": "", "requests_per_window": "", "window_seconds": 30}
    return {**data, **changes}


def test_secrets_are_encrypted_at_rest_and_read_back_as_entered():
    conn = make()
    with connection.cursor() as cur:
        cur.execute(f"SELECT access_token, secret_key FROM {Connection._meta.db_table} WHERE id = %s", [conn.pk])
        stored = cur.fetchone()
    assert all(value.startswith("gAAAA") for value in stored)  # Fernet tokens
    assert "tok-live-123456" not in "".join(stored) and "sk-live-654321" not in "".join(stored)
    again = Connection.objects.get(pk=conn.pk)
    assert (again.access_token, again.secret_key) == ("tok-live-123456", "sk-live-654321")


def test_an_empty_secret_stays_empty():
    conn = make(secret_key="")
    assert Connection.objects.get(pk=conn.pk).secret_key == ""


def test_changing_the_host_requires_the_credentials_again():
    conn = make()
    moved = ConnectionForm(form_data(conn, base_url="https://attacker.example.net"), instance=conn)
    assert not moved.is_valid()
    assert "host changed" in str(moved.errors)
    assert Connection.objects.get(pk=conn.pk).base_url == "https://pos.open.nhanh.vn"  # nothing saved
    # The same host keeps the stored secrets when the boxes are left empty …
    conn = Connection.objects.get(pk=conn.pk)  # each admin request edits a fresh instance
    same = ConnectionForm(form_data(conn, base_url="https://pos.open.nhanh.vn/", app_id="9"), instance=conn)
    assert same.is_valid(), same.errors
    same.save()
    assert Connection.objects.get(pk=conn.pk).access_token == "tok-live-123456"
    # … and a new host with its own credentials is fine.
    conn = Connection.objects.get(pk=conn.pk)
    elsewhere = ConnectionForm(form_data(conn, base_url="https://other.example.com", access_token="tok-new-1",
                                         secret_key="sk-new-1"), instance=conn)
    assert elsewhere.is_valid(), elsewhere.errors
    elsewhere.save()
    saved = Connection.objects.get(pk=conn.pk)
    assert (saved.base_url, saved.access_token, saved.secret_key) == ("https://other.example.com", "tok-new-1",
                                                                      "sk-new-1")


def test_a_new_host_drops_a_secret_that_was_not_entered_again():
    conn = make(secret_key="")
    elsewhere = ConnectionForm(form_data(conn, base_url="https://other.example.com", access_token="tok-new-2"),
                               instance=conn)
    assert elsewhere.is_valid(), elsewhere.errors
    elsewhere.save()
    assert Connection.objects.get(pk=conn.pk).access_token == "tok-new-2"


@pytest.mark.parametrize("url", ["http://user:tok@pos.open.nhanh.vn", "https://tok@pos.open.nhanh.vn/api"])
def test_credentials_in_a_url_are_refused(url):
    conn = make()
    form = ConnectionForm(form_data(conn, base_url=url), instance=conn)
    assert not form.is_valid() and "not in the URL" in str(form.errors)
    with pytest.raises(ValidationError):
        Connection(system="shopify", base_url=url).full_clean()


def test_a_redirect_to_another_host_is_not_followed_with_the_token():
    seen = []

    class Other(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    class Redirecting(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{other.server_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    other, first = HTTPServer(("127.0.0.1", 0), Other), HTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = NhanhClient(f"http://127.0.0.1:{first.server_port}", app_id="1", business_id="2",
                             access_token="tok-live-123456", requests_per_window=None, max_attempts=1)
        with pytest.raises(RequestRejected, match="redirected"):
            client.post("customer/list", {})
        assert seen == []
    finally:
        for server in (other, first):
            server.shutdown()


def test_key_files_and_the_sqlite_database_are_readable_by_the_owner_only():
    for name in ("secret_key", "encryption_salt"):
        path = settings.VAR_DIR / name
        if path.exists():
            assert os.stat(path).st_mode & 0o077 == 0, name
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        assert os.stat(connection.settings_dict["NAME"]).st_mode & 0o077 == 0
