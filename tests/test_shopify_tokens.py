"""Expiring Shopify tokens (client-credentials grant) over real HTTP against the sandbox: obtained, kept with
their expiry, renewed before they expire and once on a 401, shared by every worker through the Connection
row, never logged; a bad secret fails clearly."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests

from integrations.errors import AuthRejected
from integrations.models import Connection
from integrations.sandbox.server import control
from integrations.shopify.client import ShopifyClient
from integrations.shopify.sandbox import (
    AUTH_FAILURE_TEXT,
    SANDBOX_ACCESS_TOKEN,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
)
from integrations.shopify.tokens import MemoryTokenStore

FAST = {"backoff_base": 0.01, "backoff_max": 0.1}
PAGE = "{ customers(first: 5) { nodes { id } } }"


def start(sandbox_factory, customers=300, token_ttl=86_400.0):
    return sandbox_factory(customers=customers, seed=4, rate_limit=False, only=["shopify"],
                           shopify_token_ttl=token_ttl)


def hook(server, action, payload=None):
    return control(server.base_url, "shopify", action, payload)["result"]


def app_client(server, secret=SANDBOX_CLIENT_SECRET, **kw) -> ShopifyClient:
    return ShopifyClient(server.url_for("shopify"), client_id=SANDBOX_CLIENT_ID, client_secret=secret,
                         **{**FAST, **kw})


def test_a_token_is_obtained_once_and_reused(sandbox_factory):
    server = start(sandbox_factory)
    client = app_client(server)
    assert client.test_connection() == ("OK: shop ShopBridge Sandbox (shopbridge-sandbox.myshopify.com), "
                                        "API 2026-10")
    for _ in range(3):
        assert client.graphql(PAGE)["customers"]["nodes"]
    assert client.tokens_obtained == 1 and hook(server, "stats")["tokens_issued"] == 1  # the test obtained it
    stored = client.token_store.load()
    assert stored.token.startswith("shpat_") and 86_000 < stored.expires_at - time.time() <= 86_400


def test_the_token_is_renewed_shortly_before_it_expires(sandbox_factory):
    server = start(sandbox_factory, token_ttl=2.0)
    client = app_client(server)
    client.graphql(PAGE)
    first = client.token_store.load()
    time.sleep(max(first.expires_at - time.time() - 0.15, 0))  # inside the last tenth of its life
    client.graphql(PAGE)
    assert client.tokens_obtained == 2 and client.tokens_refused == 0  # renewed before, not after a 401
    assert client.token_store.load().token != first.token


def test_a_pull_across_token_expiry_renews_and_continues(sandbox_factory):
    server = start(sandbox_factory, customers=600)
    client = app_client(server)
    ids = []
    for nodes, _, _ in client.iter_customer_pages(first=100, fields="id legacyResourceId"):
        ids += [int(n["legacyResourceId"]) for n in nodes]
        if len(ids) == 200:
            hook(server, "tokens", {"expire_all": True})  # expired (or revoked) in the middle of the pull
    assert sorted(ids) == hook(server, "expected", {"query": None})
    assert client.tokens_refused == 1 and client.tokens_obtained == 2


def test_expired_tokens_are_refused_as_shopify_refuses_them(sandbox_factory):
    server = start(sandbox_factory, token_ttl=0.3)
    client = app_client(server)
    client.graphql(PAGE)
    token = client.token_store.load().token
    time.sleep(0.4)
    response = requests.post(f"{server.url_for('shopify')}/admin/api/2026-10/graphql.json", json={"query": PAGE},
                             headers={"X-Shopify-Access-Token": token}, timeout=5)
    assert response.status_code == 401 and response.json() == {"errors": AUTH_FAILURE_TEXT}
    legacy = requests.post(f"{server.url_for('shopify')}/admin/api/2026-10/graphql.json", json={"query": PAGE},
                           headers={"X-Shopify-Access-Token": SANDBOX_ACCESS_TOKEN}, timeout=5)
    assert legacy.status_code == 200  # a legacy custom-app token never expires


def test_a_bad_secret_fails_clearly_without_retries_and_without_leaking_it(sandbox_factory, caplog):
    server = start(sandbox_factory)
    wrong = "shpss_wrong_secret_value_123456"
    client = app_client(server, secret=wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthRejected) as caught:
        client.test_connection()
    message = str(caught.value)
    assert "client id / client secret" in message and "invalid_client" in message
    assert wrong not in message and wrong not in caplog.text and wrong not in repr(client)
    assert client.tokens_obtained == 1 and client.retries == 0 and hook(server, "stats")["tokens_issued"] == 0


def test_tokens_never_reach_the_logs(sandbox_factory, caplog):
    server = start(sandbox_factory)
    client = app_client(server)
    with caplog.at_level(logging.DEBUG):
        client.graphql(PAGE)
        hook(server, "tokens", {"expire_all": True})
        client.graphql(PAGE)
    store = client.token_store
    assert isinstance(store, MemoryTokenStore) and client.tokens_obtained == 2
    assert store.load().token not in caplog.text and SANDBOX_CLIENT_SECRET not in caplog.text
    assert "shpat_" not in caplog.text


# --- shared by every worker: the token lives on the Connection row --------------------------------------
@pytest.fixture
def app_connection(transactional_db, sandbox_factory):
    server = start(sandbox_factory)
    conn = Connection.objects.create(system="shopify", base_url=server.url_for("shopify"), api_version="2026-10",
                                     client_id=SANDBOX_CLIENT_ID, client_secret=SANDBOX_CLIENT_SECRET,
                                     is_sandbox=True)
    return server, conn


def test_workers_share_one_token_stored_on_the_connection(app_connection):
    server, conn = app_connection
    errors, barrier = [], threading.Barrier(4)

    def worker():
        from django.db import connection as db

        try:
            client = ShopifyClient.from_connection(Connection.objects.get(pk=conn.pk), **FAST)
            barrier.wait(10)  # all four ask for a token at once
            client.graphql(PAGE)
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert hook(server, "stats")["tokens_issued"] == 1  # one fetched it under the row lock, the others read it
    conn.refresh_from_db()
    assert conn.issued_token.startswith("shpat_") and conn.issued_token_expires_at is not None
    assert conn.issued_token not in repr(conn) and SANDBOX_CLIENT_SECRET not in repr(conn)
    # A later worker finds it there and fetches nothing.
    later = ShopifyClient.from_connection(conn, **FAST)
    later.graphql(PAGE)
    assert later.tokens_obtained == 0 and hook(server, "stats")["tokens_issued"] == 1


def test_a_token_refused_for_every_worker_is_renewed_once(app_connection):
    server, conn = app_connection
    first, second = (ShopifyClient.from_connection(conn, **FAST) for _ in range(2))
    first.graphql(PAGE)
    second.graphql(PAGE)
    hook(server, "tokens", {"expire_all": True})
    first.graphql(PAGE)  # 401 → renews under the row lock
    second.graphql(PAGE)  # 401 → finds the row already holds a fresh token: no second fetch
    assert first.tokens_refused == second.tokens_refused == 1
    assert hook(server, "stats")["tokens_issued"] == 2
    assert first.tokens_obtained + second.tokens_obtained == 2


def test_the_admin_keeps_the_client_secret_masked(app_connection, client, django_user_model):
    _, conn = app_connection
    ShopifyClient.from_connection(conn, **FAST).graphql(PAGE)
    conn.refresh_from_db()
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-123456789"))
    page = client.get(f"/admin/integrations/connection/{conn.pk}/change/").content.decode()
    assert SANDBOX_CLIENT_SECRET not in page and conn.issued_token not in page
    assert SANDBOX_CLIENT_SECRET[-4:] in page and "expires" in page
    listing = client.get("/admin/integrations/connection/").content.decode()
    assert "token until" in listing and conn.issued_token not in listing


def test_the_sandbox_command_refuses_a_bad_token_ttl_in_one_line():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--shopify-token-ttl must be > 0"):
        call_command("sandbox", "--shopify-token-ttl", "0", "--port", "0")
    with pytest.raises(CommandError, match="rows-per-second"):
        call_command("sandbox", "--shopify-bulk-rows-per-second", "-1", "--port", "0")


def test_a_bulk_pull_outlives_its_tokens(sandbox_factory):
    from integrations.shopify.bulk import ShopifyBulkSource

    server = sandbox_factory(customers=600, seed=4, rate_limit=False, only=["shopify"], shopify_token_ttl=0.8,
                             shopify_bulk_rows_per_second=300)  # ~2 s of Shopify work: tokens expire meanwhile
    client = app_client(server)
    pages = list(ShopifyBulkSource.customers(client, page_size=200, poll_seconds=0.1).pages(None))
    rows = [row for page in pages for row in page.rows]
    assert sorted(int(r["legacyResourceId"]) for r in rows) == hook(server, "expected", {"query": None})
    assert client.tokens_obtained >= 3 and hook(server, "stats")["tokens_issued"] == client.tokens_obtained


def test_test_connection_says_ok_with_the_shop_or_what_is_wrong(app_connection):
    from integrations.clients import check_connection

    _, conn = app_connection
    assert check_connection(conn) == (True, "Shopify: OK: shop ShopBridge Sandbox "
                                            "(shopbridge-sandbox.myshopify.com), API 2026-10")
    conn.client_secret = "shpss_not_the_secret_000000"  # the token obtained with the right one is still stored
    ok, text = check_connection(conn)
    assert not ok and "refused the client id / client secret" in text and conn.client_secret not in text
