"""The Shopee v2 client against the Shopee sandbox: signing, tokens, envelope, limits, typed errors."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from ads.models import Shop
from ads.services import setup_sandbox_shops
from ads.services.tokens import access_token, shop_client
from integrations.errors import AuthRejected, RateLimited, RequestRejected
from integrations.sandbox.server import control
from integrations.shopee import sandbox as sbx
from integrations.shopee.client import (
    RefreshRejected,
    ShopeeClient,
    SignatureRejected,
    TokenInvalid,
    sign,
)

pytestmark = pytest.mark.django_db(transaction=True)
SHOP = sbx.SHOP_ID_BASE + 1  # 335 campaigns


@pytest.fixture
def shopee(sandbox_factory, settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 3, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05}
    return sandbox_factory(only=["shopee"], shopee_shops=[35, 335], seed=2, rate_limit=False)


def raw_client(server, **kw) -> ShopeeClient:
    tokens = control(server.base_url, "shopee", "issue_tokens", {"shop_id": SHOP})["result"]
    options = {"partner_id": sbx.SANDBOX_PARTNER_ID, "partner_key": sbx.SANDBOX_PARTNER_KEY, "shop_id": SHOP,
               "access_token": tokens["access_token"], "max_attempts": 2, "backoff_base": 0.01,
               "backoff_max": 0.02, "rate_limit_pause": 0.05, **kw}
    return ShopeeClient(server.url_for("shopee"), **options)


def stats(server) -> dict:
    return control(server.base_url, "shopee", "stats")["result"]


def test_signature_is_hmac_sha256_of_the_documented_string():
    import hashlib
    import hmac

    message = "1000001/api/v2/ads/get_total_balance1735000000tok600000"
    expected = hmac.new(b"key", message.encode(), hashlib.sha256).hexdigest()
    assert sign("key", 1000001, "/api/v2/ads/get_total_balance", 1735000000, "tok", 600000) == expected


def test_lists_pages_of_ids_and_splits_id_lists_over_100(shopee):
    client = raw_client(shopee)
    ids = [r["campaign_id"] for r in client.campaign_ids(page_size=100)]
    assert len(ids) == 335 and len(set(ids)) == 335
    assert stats(shopee)["calls"]["get_product_level_campaign_id_list"] == 4
    settings_rows = client.campaign_settings(ids[:250])
    assert [r["campaign_id"] for r in settings_rows] == ids[:250]
    assert stats(shopee)["calls"]["get_product_level_campaign_setting_info"] == 3  # 100 + 100 + 50


def test_performance_dates_and_both_response_shapes(shopee):
    client = raw_client(shopee)
    ids = [r["campaign_id"] for r in client.campaign_ids()][:4]  # odd and even first ids: both shapes served
    today = timezone.localdate()
    for part in (ids[:2], ids[1:3]):
        rows = client.campaign_daily_performance(part, today - timedelta(days=3), today)
        assert [r["campaign_id"] for r in rows] == part and len(rows[0]["metrics_list"]) == 4
    with pytest.raises(ValueError):
        client.campaign_daily_performance(ids, today, today)  # daily APIs refuse start == end
    with pytest.raises(RequestRejected) as refused:
        client.campaign_daily_performance(ids, today, today + timedelta(days=2))
    assert refused.value.code == "ads.performance.error_date_in_future"


def test_wrong_sign_and_stale_timestamp_are_refused_without_retry(shopee):
    bad = raw_client(shopee, partner_key="not-the-key")
    with pytest.raises(SignatureRejected) as refused:
        bad.total_balance()
    assert refused.value.code == "error_sign" and bad.calls == 1
    late = raw_client(shopee, clock=lambda: time.time() - 3600)
    with pytest.raises(RequestRejected) as stale:
        late.total_balance()
    assert stale.value.code == "error_param" and "expired" in str(stale.value)


def test_expired_token_without_a_source_is_a_typed_error(shopee):
    client = raw_client(shopee)
    control(shopee.base_url, "shopee", "expire_tokens", {"shop_id": SHOP})
    with pytest.raises(TokenInvalid):
        client.total_balance()


def test_rate_limit_and_server_errors_are_retried_then_typed(shopee):
    client = raw_client(shopee, max_attempts=3)
    control(shopee.base_url, "shopee", "faults", {"rate_limit_next": 2})
    assert client.total_balance()["total_balance"] > 0 and client.retries == 2
    control(shopee.base_url, "shopee", "faults", {"rate_limit_next": 5})
    with pytest.raises(RateLimited) as limited:
        client.total_balance()
    assert limited.value.code == "ads.rate_limit.exceed_shop_api" and limited.value.status == 429


def test_wrong_method_and_foreign_campaign(shopee):
    client = raw_client(shopee)
    with pytest.raises(RequestRejected) as wrong:
        client.shop_call("POST", "ads/get_total_balance", body={})
    assert wrong.value.code == "ads.api.http_method_not_allowed"
    with pytest.raises(RequestRejected) as foreign:
        client.campaign_settings([10_000_000])  # a campaign of the other shop
    assert foreign.value.code == "ads.shop.campaign_not_match"


# --- tokens through the shop row -------------------------------------------------------------------------
@pytest.fixture
def shop(shopee) -> Shop:
    setup_sandbox_shops(shopee.base_url)
    return Shop.objects.get(shop_id=SHOP)


def test_expired_access_token_is_renewed_once_and_both_tokens_replaced(shopee, shop):
    old_access, old_refresh = shop.access_token, shop.refresh_token
    control(shopee.base_url, "shopee", "expire_tokens", {"shop_id": SHOP})
    client = shop_client(shop)
    assert client.total_balance()["total_balance"] > 0
    shop.refresh_from_db()
    assert shop.access_token != old_access and shop.refresh_token != old_refresh
    assert client.token_renewals == 1 and stats(shopee)["refreshes"] == {str(SHOP): 1}
    # The old refresh token is burnt: Shopee refuses a second use of it.
    with pytest.raises(RefreshRejected):
        client.refresh_access_token(old_refresh, SHOP)


def test_two_workers_needing_a_new_token_at_once_refresh_it_once(shopee, shop):
    old = shop.access_token
    control(shopee.base_url, "shopee", "expire_tokens", {"shop_id": SHOP})
    control(shopee.base_url, "shopee", "faults", {"latency_ms": 300})  # a slow refresh widens the race
    barrier, got, errors = threading.Barrier(3), [], []

    def worker():
        from django.db import connections

        try:
            barrier.wait()
            got.append(access_token(shop.pk, rejected=old))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(got)) == 1 and got[0] != old
    assert stats(shopee)["refreshes"] == {str(SHOP): 1}
    control(shopee.base_url, "shopee", "faults", {"latency_ms": 0})
    shop.refresh_from_db()
    assert shop.access_token == got[0]
    assert shop_client(shop).total_balance()["total_balance"] > 0  # the stored pair still works


def test_a_shop_without_refresh_token_says_so(shopee, shop):
    Shop.objects.filter(pk=shop.pk).update(access_token="", refresh_token="")
    with pytest.raises(AuthRejected, match="authorize the app again"):
        access_token(shop.pk)


def test_tokens_are_masked_in_repr(shop):
    assert shop.access_token not in repr(shop) and shop.access_token not in repr(shop_client(shop))


def test_sandbox_truth_and_status_over_plain_get(shopee):
    import requests

    truth = requests.get(f"{shopee.base_url}/_sandbox/shopee/campaigns?shop_id={SHOP}", timeout=5).json()["result"]
    assert truth["count"] == 335 and len(set(truth["campaign_ids"])) == 335
    assert requests.get(f"{shopee.base_url}/_sandbox/", timeout=5).json()["shopee"]["shops"] == {
        str(sbx.SHOP_ID_BASE): 35, str(SHOP): 335}


def test_sandbox_command_parses_shop_counts():
    from django.core.management.base import CommandError

    from integrations.management.commands.sandbox import _counts

    assert _counts("35,335,917,10000") == [35, 335, 917, 10000] and _counts("") is None
    with pytest.raises(CommandError):
        _counts("35,many")


def test_ads_schedules_are_installed_in_local_time(db):
    from django_celery_beat.models import PeriodicTask

    from config.schedules import install_schedules

    install_schedules()
    tasks = {t.task: t for t in PeriodicTask.objects.filter(task__startswith="ads.")}
    crons = {name: (t.crontab.minute, t.crontab.hour, str(t.crontab.timezone)) for name, t in tasks.items()}
    assert crons == {
        "ads.enqueue_shops": ("*/15", "*", "Asia/Ho_Chi_Minh"), "ads.process_queue": ("*/5", "*", "Asia/Ho_Chi_Minh"),
        "ads.cleanup_stuck": ("*/10", "*", "Asia/Ho_Chi_Minh"), "ads.backfill": ("0", "2", "Asia/Ho_Chi_Minh"),
        "ads.cleanup_queue": ("0", "2", "Asia/Ho_Chi_Minh"), "ads.budget_scheduler": ("0,30", "*", "Asia/Ho_Chi_Minh"),
    }
    assert all(t.expire_seconds for t in tasks.values())
