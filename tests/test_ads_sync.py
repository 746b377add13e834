"""The chunked Shopee ads sync against the Shopee sandbox over real HTTP and the real database."""

from __future__ import annotations

import random
import threading

import pytest
from django.core import mail

from ads.models import (
    Campaign,
    CampaignDailyPerformance,
    QueueStatus,
    Shop,
    ShopDailyPerformance,
    Stage,
    SyncProgress,
    SyncQueue,
)
from ads.services import setup_sandbox_shops, sync
from integrations.sandbox.server import control
from jobs.models import BackgroundJob, JobStatus, StartedBy

pytestmark = pytest.mark.django_db(transaction=True)

SHOPS = [35, 335, 917]


@pytest.fixture(autouse=True)
def fast(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 2, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05}
    settings.ADS_CHUNK_RETRY_BACKOFF = 0.01
    settings.ADMINS = [("Ops", "ops@example.com")]
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def shopee(sandbox_factory):
    # Rate limits off: these tests are about the sync's logic (test_rate_limits_are_ridden_out has them on).
    server = sandbox_factory(only=["shopee"], shopee_shops=SHOPS, seed=5, rate_limit=False)
    setup_sandbox_shops(server.base_url)
    return server


def shop_with(count: int) -> Shop:
    return Shop.objects.get(shop_id=600_001 + SHOPS.index(count))


def truth(server, shop: Shop) -> list[int]:
    return control(server.base_url, "shopee", "campaigns", {"shop_id": shop.shop_id})["result"]["campaign_ids"]


def sync_now(shop: Shop) -> SyncProgress:
    job = sync.start_shop_sync(shop, started_by=StartedBy.COMMAND, foreground=True)
    from jobs.services import run_job

    run_job(job.pk)
    return SyncProgress.objects.get(shop=shop)


@pytest.mark.parametrize("count,chunks", [(35, 1), (335, 4), (917, 10)])
def test_chunk_counts_and_every_campaign_stored_exactly_once(shopee, count, chunks):
    shop = shop_with(count)
    progress = sync_now(shop)
    assert progress.stage == Stage.COMPLETED, progress.error_message
    assert progress.total_chunks == chunks and progress.chunks_done == chunks and progress.chunks_failed == 0
    stored = Campaign.objects.filter(shop=shop).values_list("campaign_id", flat=True)
    assert sorted(stored) == sorted(truth(shopee, shop))
    assert progress.synced_campaigns == progress.total_campaigns == count
    sizes = list(SyncQueue.objects.filter(run_id=progress.run_id, is_chunk=True).order_by("chunk_index")
                 .values_list("campaign_ids", flat=True))
    assert [len(s) for s in sizes] == ([count] if chunks == 1 else [100] * (chunks - 1) + [count - 100 * (chunks - 1)])
    # Daily results for every campaign of the run, and for the shop.
    assert CampaignDailyPerformance.objects.filter(campaign__shop=shop).values("campaign").distinct().count() == count
    assert ShopDailyPerformance.objects.filter(shop=shop).count() == 2
    job = BackgroundJob.objects.get(pk=progress.job_id)
    assert job.status == JobStatus.COMPLETED and job.processed == job.total == count
    assert job.metadata["chunks"] == f"{chunks}/{chunks}"


def test_stages_in_order_and_the_stage_moves_on_only_after_every_chunk(shopee):
    shop = shop_with(335)
    progress = sync_now(shop)
    assert [s["stage"] for s in progress.stage_log] == ["syncing_campaigns", "syncing_performance", "completed"]
    finished = SyncQueue.objects.filter(run_id=progress.run_id, is_chunk=True).values_list("finished_at", flat=True)
    assert progress.started_at <= min(finished) and max(finished) <= progress.performance_started_at
    assert progress.performance_started_at <= progress.completed_at


def test_rerun_is_idempotent(shopee):
    shop = shop_with(335)
    sync_now(shop)
    days = CampaignDailyPerformance.objects.filter(campaign__shop=shop).count()
    progress = sync_now(shop)
    assert progress.stage == Stage.COMPLETED
    assert Campaign.objects.filter(shop=shop).count() == 335
    assert CampaignDailyPerformance.objects.filter(campaign__shop=shop).count() == days


def test_chunks_finishing_out_of_order_complete_the_shop_exactly_once(shopee):
    shop = shop_with(917)
    entry = SyncQueue.objects.create(shop=shop)
    plan = sync.begin_run(entry.pk)
    chunk_pks = list(SyncQueue.objects.filter(run_id=plan.run_id, is_chunk=True).order_by("-chunk_index")
                     .values_list("pk", flat=True))
    # The last index first, the first index last, the rest shuffled over three threads.
    middle = chunk_pks[1:-1]
    random.Random(3).shuffle(middle)
    sync.run_chunk(chunk_pks[0])
    threads = [threading.Thread(target=lambda part=middle[i::3]: [sync.run_chunk(pk) for pk in part])
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.SYNCING_CAMPAIGNS  # chunk 0 is still out
    sync.run_chunk(chunk_pks[-1])
    sync.ensure_finished(shop.pk, plan.run_id)  # the chord's callback arriving late changes nothing
    progress.refresh_from_db()
    assert progress.stage == Stage.COMPLETED
    assert [s["stage"] for s in progress.stage_log].count("syncing_performance") == 1
    calls = control(shopee.base_url, "shopee", "stats")["result"]["calls"]
    assert calls["get_product_campaign_daily_performance"] == 10  # performance ran once: 917 ids / 100
    assert calls["get_all_cpc_ads_daily_performance"] == 1


def test_the_id_list_is_fetched_once_and_each_chunk_keeps_its_slice(shopee):
    shop = shop_with(335)
    entry = SyncQueue.objects.create(shop=shop)
    plan = sync.begin_run(entry.pk)
    original = truth(shopee, shop)
    # The list changes mid-run (new campaigns listed first): offsets re-read per chunk would skip/repeat.
    control(shopee.base_url, "shopee", "add_campaigns", {"shop_id": shop.shop_id, "count": 30})
    sync.run_lanes_here(shop.pk, plan.run_id, 2)
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.COMPLETED
    assert sorted(Campaign.objects.filter(shop=shop).values_list("campaign_id", flat=True)) == sorted(original)
    assert control(shopee.base_url, "shopee", "stats")["result"]["calls"]["get_product_level_campaign_id_list"] == 1


def test_transient_chunk_failure_is_retried(shopee, settings):
    shop = shop_with(335)
    # Fails 3 calls: beyond the client's own 2 attempts, so the chunk itself is retried.
    control(shopee.base_url, "shopee", "fail_chunk", {"shop_id": shop.shop_id, "chunk_index": 2, "times": 3})
    progress = sync_now(shop)
    assert progress.stage == Stage.COMPLETED, progress.error_message
    chunk = SyncQueue.objects.get(run_id=progress.run_id, chunk_index=2)
    assert chunk.status == QueueStatus.COMPLETED and chunk.attempts == 2
    assert Campaign.objects.filter(shop=shop).count() == 335
    assert mail.outbox == []


def test_permanent_failure_is_recorded_and_mailed_once(shopee):
    shop = shop_with(917)
    control(shopee.base_url, "shopee", "fail_chunk", {"shop_id": shop.shop_id, "chunk_index": 4, "times": -1,
                                                      "error": "error_data"})
    job = sync.start_shop_sync(shop, started_by=StartedBy.COMMAND)  # eager Celery: start task, chord, lanes
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.FAILED
    assert progress.chunks_done == 9 and progress.chunks_failed == 1
    assert [f["index"] for f in progress.failed_chunks] == [4] and "error_data" in progress.failed_chunks[0]["error"]
    assert "1 of 10 chunks failed" in progress.error_message and "chunk 4" in progress.error_message
    assert Campaign.objects.filter(shop=shop).count() == 817
    assert SyncQueue.objects.get(run_id=progress.run_id, chunk_index=4).attempts == 3
    assert len(mail.outbox) == 1 and "ops@example.com" in mail.outbox[0].to
    assert "chunk 4" in mail.outbox[0].body
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "chunk 4" in job.error
    # Retry the failed chunk once the upstream is fine again: the run completes, no second mail.
    control(shopee.base_url, "shopee", "clear_failures")
    sync.retry_failed_chunks(shop, foreground=True)
    progress.refresh_from_db()
    assert progress.stage == Stage.COMPLETED and progress.chunks_done == 10
    assert Campaign.objects.filter(shop=shop).count() == 917
    assert len(mail.outbox) == 1


def test_queue_processor_takes_priority_then_age_and_skips_busy_shops(shopee):
    small, middle = shop_with(35), shop_with(335)
    first = sync.enqueue_shop(small)
    second = sync.enqueue_shop(middle, priority=5)
    assert sync.enqueue_shop(small) is None  # one pending entry per shop and type
    started = sync.process_queue(batch=1)
    assert started == [second.pk]
    assert SyncProgress.objects.get(shop=middle).stage == Stage.COMPLETED
    assert sync.process_queue() == [first.pk]
    first.refresh_from_db()
    assert first.status == QueueStatus.COMPLETED


def test_stuck_shop_is_failed_and_requeued(shopee, settings):
    shop = shop_with(335)
    entry = SyncQueue.objects.create(shop=shop)
    plan = sync.begin_run(entry.pk)
    sync.run_chunk(SyncQueue.objects.get(run_id=plan.run_id, chunk_index=0).pk)
    from datetime import timedelta

    from django.utils import timezone

    SyncProgress.objects.filter(shop=shop).update(last_chunk_at=timezone.now() - timedelta(minutes=31))
    assert sync.cleanup_stuck() == [shop.shop_id]
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.FAILED and "Stuck" in progress.error_message
    assert SyncQueue.objects.filter(shop=shop, is_chunk=False, status=QueueStatus.PENDING).count() == 1
    assert not SyncQueue.objects.filter(run_id=plan.run_id, status=QueueStatus.PENDING).exists()
    assert len(mail.outbox) == 1
    # The old run's lanes, if still alive, change nothing; the re-queued entry syncs the shop.
    assert sync.run_lane(shop.pk, plan.run_id) == 0
    sync.process_queue()
    assert SyncProgress.objects.get(shop=shop).stage == Stage.COMPLETED
    assert sync.cleanup_stuck() == []


def test_reset_shop(shopee):
    shop = shop_with(335)
    entry = SyncQueue.objects.create(shop=shop)
    plan = sync.begin_run(entry.pk)
    sync.enqueue_shop(shop)
    result = sync.reset_shop(shop)
    assert result == {"chunks_failed": 4, "pending_removed": 1}
    assert SyncProgress.objects.get(shop=shop).stage == Stage.IDLE
    assert sync.run_lane(shop.pk, plan.run_id) == 0


def test_chunk_size_adapts_to_measured_time(shopee, settings):
    settings.ADS_CHUNK_TARGET_SECONDS = 0.0001  # every chunk is "too slow": the next run uses smaller chunks
    shop = shop_with(335)
    sync_now(shop)
    assert SyncProgress.objects.get(shop=shop).chunk_size == settings.ADS_CHUNK_SIZE_MIN
    progress = sync_now(shop)
    assert progress.total_chunks == 17 and progress.stage == Stage.COMPLETED


def test_rate_limits_are_ridden_out(sandbox_factory, settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 8}
    server = sandbox_factory(only=["shopee"], shopee_shops=SHOPS, seed=5)
    setup_sandbox_shops(server.base_url)
    control(server.base_url, "shopee", "faults", {"rate_limit_next": 3})
    shop = shop_with(917)
    progress = sync_now(shop)
    assert progress.stage == Stage.COMPLETED, progress.error_message
    assert Campaign.objects.filter(shop=shop).count() == 917


def test_nightly_backfill_syncs_seven_days_and_queue_cleanup_keeps_recent_rows(shopee):
    from datetime import timedelta

    from django.utils import timezone

    from ads.tasks import backfill, cleanup_queue

    assert backfill() == 3
    sync.process_queue()
    shop = shop_with(35)
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.COMPLETED and progress.sync_type == "backfill"
    assert ShopDailyPerformance.objects.filter(shop=shop).count() == 7
    assert CampaignDailyPerformance.objects.filter(campaign__shop=shop).count() == 35 * 7
    assert cleanup_queue() == 0  # everything is recent
    SyncQueue.objects.update(created_at=timezone.now() - timedelta(days=8))
    current = SyncQueue.objects.filter(pk__in=SyncProgress.objects.values("queue_entry_id")).count()
    kept_chunks = SyncQueue.objects.filter(run_id__in=SyncProgress.objects.values("run_id")).count()
    cleanup_queue()
    assert SyncQueue.objects.count() == current + kept_chunks  # the shops' current runs stay visible


def test_cancelling_the_job_stops_the_run_at_a_chunk_boundary(shopee):
    shop = shop_with(917)
    job = sync.start_shop_sync(shop, started_by=StartedBy.COMMAND, foreground=True)
    entry = SyncQueue.objects.get(job=job, is_chunk=False)
    plan = sync.begin_run(entry.pk)
    sync.run_chunk(SyncQueue.objects.get(run_id=plan.run_id, chunk_index=0).pk)
    BackgroundJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    sync.run_lanes_here(shop.pk, plan.run_id, 2)
    progress = SyncProgress.objects.get(shop=shop)
    assert progress.stage == Stage.FAILED and progress.chunks_done == 1 and progress.chunks_failed == 9
    assert "cancelled by staff" in progress.error_message
    assert Campaign.objects.filter(shop=shop).count() == 100


def test_enqueueing_twice_keeps_one_pending_entry(shopee):
    shop = shop_with(35)
    first = sync.enqueue_shop(shop)
    assert sync.enqueue_shop(shop, priority=10) is None
    first.refresh_from_db()
    assert first.priority == 10 and SyncQueue.objects.filter(shop=shop).count() == 1
    assert sync.enqueue_shop(shop, sync_type="backfill") is not None  # another type is another entry


def test_dashboard_retry_of_an_ads_job(shopee):
    from jobs.services import retry_job

    shop = shop_with(35)
    first = sync.start_shop_sync(shop, started_by=StartedBy.COMMAND)  # eager: runs to completed
    again = retry_job(first)
    assert again.retry_of_id == first.pk
    again.refresh_from_db()
    assert again.status == JobStatus.COMPLETED
    SyncProgress.objects.filter(shop=shop).update(stage=Stage.SYNCING_CAMPAIGNS)
    refused = retry_job(again)
    assert refused.status == JobStatus.CANCELLED and "queued" in refused.error
    assert SyncQueue.objects.filter(shop=shop, status=QueueStatus.PENDING, is_chunk=False).count() == 1
