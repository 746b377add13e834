"""The ads sync through real Celery worker processes: the start task, the chord of lanes, the callback."""

import pytest

from ads.models import Campaign, QueueStatus, Shop, Stage, SyncProgress, SyncQueue
from ads.services import setup_sandbox_shops, sync
from integrations.sandbox.server import control
from jobs.models import BackgroundJob, JobStatus
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker]


def test_two_workers_sync_a_chunked_shop_in_parallel(celery_worker_process, sandbox_factory):
    server = sandbox_factory(only=["shopee"], shopee_shops=[917], seed=9, rate_limit=False, latency_ms=40)
    setup_sandbox_shops(server.base_url)
    shop = Shop.objects.get()
    # One chunk fails once (beyond the client's attempts): that lane retries it while the others go on.
    control(server.base_url, "shopee", "fail_chunk", {"shop_id": shop.shop_id, "chunk_index": 0, "times": 2})
    env = {"SHOPBRIDGE_HTTP_MAX_ATTEMPTS": 1, "ADS_CHUNK_RETRY_BACKOFF": 1.5, "ADS_SHOP_CONCURRENCY": 3}
    workers = [celery_worker_process(**env), celery_worker_process(**env)]
    entry = sync.enqueue_shop(shop)
    assert sync.process_queue() == [entry.pk]

    def finished():
        p = SyncProgress.objects.filter(shop=shop, stage__in=[Stage.COMPLETED, Stage.FAILED]).first()
        return p

    logs = lambda: "\n".join(w.log()[-3000:] for w in workers)  # noqa: E731
    progress = wait_for(finished, timeout=120, message=f"the run to finish; worker logs:\n{logs()}")
    assert progress.stage == Stage.COMPLETED, progress.error_message
    assert [s["stage"] for s in progress.stage_log] == ["syncing_campaigns", "syncing_performance", "completed"]
    assert progress.total_chunks == 10 and progress.chunks_done == 10
    assert Campaign.objects.filter(shop=shop).count() == 917
    chunk0 = SyncQueue.objects.get(run_id=progress.run_id, chunk_index=0)
    assert chunk0.attempts == 3 and chunk0.status == QueueStatus.COMPLETED
    # Chunk 0 was retried (1.5 s + 3 s of backoff), so the other lane finished later chunks first; the shop
    # still completed once, after all of them.
    later = SyncQueue.objects.filter(run_id=progress.run_id, chunk_index__gt=0, finished_at__lt=chunk0.finished_at)
    assert later.exists() and chunk0.finished_at <= progress.performance_started_at
    job = BackgroundJob.objects.get(pk=progress.job_id)
    assert job.status == JobStatus.COMPLETED and job.metadata["chunks"] == "10/10" and job.processed == 917
    # Both workers ran lanes.
    assert all("ads.sync_lane" in w.log() for w in workers), logs()
