"""A job whose worker dies or is asked to stop resumes by itself, from its checkpoint, on another worker.
Real worker processes and a real broker (Redis in CI, the filesystem broker by default)."""

from __future__ import annotations

import signal
import time

import pytest

from customers.models import NhanhCustomer
from integrations.sandbox.server import control
from jobs import services
from jobs.models import BackgroundJob, JobStatus, PullProgress, PullStatus, StartedBy
from jobs.pull_specs import start_pull
from jobs.selftest import start_selftest
from tests.conftest import wait_for
from tests.test_customer_pulls import connect_nhanh, expected_ids, stored_ids

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
WORKER_ENV = {"SHOPBRIDGE_STALE_AFTER_SECONDS": 3, "SHOPBRIDGE_UPSERT_BATCH_SIZE": 200, "SHOPBRIDGE_MAX_RESCUES": 2}


@pytest.fixture
def short_stale_window(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "STALE_AFTER_SECONDS": 3, "UPSERT_BATCH_SIZE": 200,
                           "MAX_RESCUES": 2}


@pytest.fixture
def nhanh(sandbox_factory):
    server = sandbox_factory(customers=3000, seed=5)
    connect_nhanh(server)
    return server


def job(pk) -> BackgroundJob:
    return BackgroundJob.objects.get(pk=pk)


def test_a_killed_worker_s_pull_is_rescued_by_the_next_worker_and_finishes_exactly(
        nhanh, short_stale_window, celery_worker_process):
    control(nhanh.base_url, "nhanh", "faults", {"latency_ms": 25})
    first = celery_worker_process(**WORKER_ENV)
    started = start_pull("nhanh", "customers", "all")
    wait_for(lambda: PullProgress.objects.filter(progress_id="nhanh_customers", items_done__gte=800).exists(),
             timeout=120, message=f"batches committed; worker log:\n{first.log()}")
    first.kill(signal.SIGKILL)  # the whole worker, as a dying machine: no cleanup, message unacknowledged
    done_before = PullProgress.objects.get(progress_id="nhanh_customers").items_done
    wait_for(lambda: job(started.job.pk).is_stale, timeout=15, message="job goes stale")
    second = celery_worker_process(**WORKER_ENV)  # finds the orphan when it starts
    wait_for(lambda: job(started.job.pk).attempts == 2 and job(started.job.pk).status == JobStatus.RUNNING,
             timeout=60, message=f"rescued run started; log:\n{second.log()}")
    with pytest.raises(services.JobBusy):  # a late redelivery of the original message while the rescue runs
        services.run_job(started.job.pk)
    wait_for(lambda: not job(started.job.pk).is_active, timeout=120, message=f"finished; log:\n{second.log()}")
    done = job(started.job.pk)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.attempts == 2 and len(done.metadata["rescues"]) == 1
    assert "attempt 2 of 3" in services.job_as_dict(done)["display"]["status"]
    assert done.metadata["resumed_from"]["rows"] == done_before  # continued from the checkpoint
    assert stored_ids() == expected_ids(nhanh) and NhanhCustomer.objects.count() == 3000
    # Hours later the broker hands the first message out again: it changes nothing.
    assert services.run_job(started.job.pk) == JobStatus.COMPLETED
    assert job(started.job.pk).attempts == 2


def test_sigterm_hands_the_running_pull_back_and_another_worker_completes_it(
        nhanh, short_stale_window, celery_worker_process):
    control(nhanh.base_url, "nhanh", "faults", {"latency_ms": 150})
    workers = [celery_worker_process(**WORKER_ENV), celery_worker_process(**WORKER_ENV)]
    started = start_pull("nhanh", "customers", "all")
    wait_for(lambda: PullProgress.objects.filter(progress_id="nhanh_customers", items_done__gte=400).exists(),
             timeout=120, message="batches committed")
    running_on = job(started.job.pk).worker
    leaving, staying = sorted(workers, key=lambda w: not running_on.startswith(f"{w.queue}-{workers.index(w)}@"))
    t = time.monotonic()
    leaving.proc.send_signal(signal.SIGTERM)  # a deploy stopping the worker: warm shutdown
    leaving.proc.wait(30)
    assert time.monotonic() - t < 15, f"worker took too long to stop:\n{leaving.log()}"
    control(nhanh.base_url, "nhanh", "faults", {"latency_ms": 0})
    wait_for(lambda: not job(started.job.pk).is_active, timeout=120, message=f"finished; log:\n{staying.log()}")
    done = job(started.job.pk)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.attempts == 2 and len(done.metadata["handbacks"]) == 1
    assert done.worker != running_on  # finished by the worker that stayed
    assert stored_ids() == expected_ids(nhanh) and NhanhCustomer.objects.count() == 3000
    assert PullProgress.objects.get(progress_id="nhanh_customers").status == PullStatus.COMPLETED


def test_a_job_that_kills_its_worker_every_time_fails_after_the_bound(short_stale_window, celery_worker_process):
    worker = celery_worker_process(**WORKER_ENV)
    crashing = start_selftest(params={"items": 100, "batch": 10, "delay": 0.1, "crash_after": 2},
                              started_by=StartedBy.COMMAND)

    def rescued_until_failed():
        services.rescue_stale_jobs()  # what beat's "Rescue stale jobs" runs every SHOPBRIDGE_STALE_CHECK_SECONDS
        return job(crashing.pk).status == JobStatus.FAILED

    wait_for(rescued_until_failed, timeout=120, interval=0.5, message=f"bound reached; log:\n{worker.log()}")
    failed = job(crashing.pk)
    assert failed.attempts == 3 and len(failed.metadata["rescues"]) == 2
    assert "Stopped after 2 rescues" in failed.error
