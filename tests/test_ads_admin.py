"""Ads monitoring in the admin and `manage.py ads`: the progress columns, filters, actions behind their own
permissions, the shop page's charts, the command's sub-commands and exit codes."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from ads.models import QueueStatus, Shop, Stage, SyncProgress, SyncQueue
from ads.services import setup_sandbox_shops
from integrations.sandbox.server import control

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def eager(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 2, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05}
    settings.ADS_CHUNK_RETRY_BACKOFF = 0.01
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def shopee(sandbox_factory):
    server = sandbox_factory(only=["shopee"], shopee_shops=[35, 335], seed=6, rate_limit=False)
    setup_sandbox_shops(server.base_url)
    return server


def shop(count: int) -> Shop:
    return Shop.objects.get(shop_id=600_001 + [35, 335].index(count))


def run(*args) -> str:
    out = io.StringIO()
    call_command("ads", *args, stdout=out)
    return out.getvalue()


def test_sync_wait_exits_zero_only_when_completed(shopee):
    out = run("sync", str(shop(335).shop_id), "--wait")
    assert "Completed: 335/335 campaigns in 4 chunk(s)" in out
    control(shopee.base_url, "shopee", "fail_chunk", {"shop_id": shop(35).shop_id, "chunk_index": 0, "times": -1,
                                                      "chunk_size": 35, "error": "error_data"})
    with pytest.raises(CommandError, match="failed"):
        run("sync", str(shop(35).shop_id), "--wait")
    with pytest.raises(CommandError, match="no shop with id 42"):
        run("reset", "42")
    with pytest.raises(CommandError, match="exactly one SHOP_ID"):
        run("sync")


def test_enqueue_process_status_reset_cleanup(shopee):
    assert "2 shop(s) queued" in run("enqueue")
    assert "already queued" in run("enqueue", str(shop(35).shop_id))
    assert "2 run(s) started" in run("process")
    status = run("status")
    assert "completed" in status and "4/4" in status and "335/335" in status
    SyncProgress.objects.filter(shop=shop(335)).update(stage=Stage.SYNCING_CAMPAIGNS,
                                                       last_chunk_at=timezone.now() - timedelta(hours=1))
    assert "STUCK" in run("status", str(shop(335).shop_id))
    assert "1 stuck shop(s) failed and re-queued" in run("cleanup")
    assert SyncQueue.objects.filter(shop=shop(335), status=QueueStatus.PENDING, is_chunk=False).count() == 1
    assert "1 pending entr(ies) removed" in run("reset", str(shop(335).shop_id))
    assert SyncProgress.objects.get(shop=shop(335)).stage == Stage.IDLE


def test_admin_progress_columns_filters_and_charts(shopee, staff_client):
    run("sync", str(shop(335).shop_id), "--wait")
    page = staff_client.get(reverse("admin:ads_shop_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "4/4" in html and "335/335" in html and "100.0%" in html
    SyncProgress.objects.filter(shop=shop(335)).update(stage=Stage.SYNCING_CAMPAIGNS,
                                                       last_chunk_at=timezone.now() - timedelta(hours=1))
    stuck = staff_client.get(reverse("admin:ads_shop_changelist") + "?stuck=yes").content.decode()
    assert str(shop(335).shop_id) in stuck and str(shop(35).shop_id) not in stuck
    detail = staff_client.get(reverse("admin:ads_shop_change", args=[shop(335).pk])).content.decode()
    assert detail.count('class="ads-chart"') == 3 and "Daily spend" in detail and "ROAS" in detail
    assert "http://" not in detail.split("ads-charts", 1)[1].split("</fieldset>", 1)[0].replace(
        "http://www.w3.org/2000/svg", "")  # nothing fetched from elsewhere
    assert shop(335).access_token not in detail and shop(335).partner_key not in detail


def test_actions_need_their_own_permissions(shopee, client, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw-123456", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_shop", "change_shop"]))
    client.force_login(user)
    url = reverse("admin:ads_shop_changelist")
    page = client.get(url).content.decode()
    assert "enqueue_now" not in page and "reset" not in page and "retry_failed" not in page
    user.user_permissions.add(Permission.objects.get(codename="enqueue_shop_sync"))
    page = client.get(url).content.decode()
    assert "enqueue_now" in page and 'value="reset"' not in page
    response = client.post(url, {"action": "enqueue_now", "_selected_action": [shop(35).pk]}, follow=True)
    assert "1 shop(s) queued; 1 run(s) started now" in response.content.decode()
    assert SyncProgress.objects.get(shop=shop(35)).stage == Stage.COMPLETED
    # Without the reset permission, posting the action anyway is refused.
    client.post(url, {"action": "reset", "_selected_action": [shop(35).pk]})
    assert SyncProgress.objects.get(shop=shop(35)).stage == Stage.COMPLETED
    user.user_permissions.add(Permission.objects.get(codename="reset_shop_sync"))
    client.post(url, {"action": "reset", "_selected_action": [shop(35).pk]})
    assert SyncProgress.objects.get(shop=shop(35)).stage == Stage.IDLE


def test_retry_failed_chunks_action(shopee, staff_client):
    control(shopee.base_url, "shopee", "fail_chunk", {"shop_id": shop(335).shop_id, "chunk_index": 1, "times": -1,
                                                      "error": "error_data"})
    with pytest.raises(CommandError):
        run("sync", str(shop(335).shop_id), "--wait")
    failed = staff_client.get(reverse("admin:ads_shop_changelist") + "?failed=yes").content.decode()
    assert str(shop(335).shop_id) in failed
    control(shopee.base_url, "shopee", "clear_failures")
    staff_client.post(reverse("admin:ads_shop_changelist"),
                      {"action": "retry_failed", "_selected_action": [shop(335).pk]})
    progress = SyncProgress.objects.get(shop=shop(335))
    assert progress.stage == Stage.COMPLETED and progress.chunks_done == 4 and progress.failed_chunks == []
