"""End to end with a real Celery worker process (Redis in CI, the filesystem broker by default)."""

import pytest

from jobs.models import BackgroundJob, JobStatus, StartedBy
from jobs.selftest import start_selftest
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker]


def test_a_worker_process_runs_a_tracked_job_to_completed(celery_worker_process):
    worker = celery_worker_process()
    job = start_selftest(params={"items": 40, "batch": 10, "delay": 0.3}, started_by=StartedBy.COMMAND)
    # Seen from this process while the worker runs it: RUNNING with counts part way.
    running = wait_for(lambda: BackgroundJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING,
                                                            processed__gt=0, processed__lt=40).first(),
                       timeout=60, message=f"job running part way; worker log:\n{worker.log()}")
    assert running.total == 40
    done = wait_for(lambda: BackgroundJob.objects.filter(pk=job.pk, status=JobStatus.COMPLETED).first(),
                    timeout=60, message="job completed")
    assert (done.processed, done.successful, done.failed) == (40, 40, 0)
    assert done.celery_task_id and done.started_by == StartedBy.COMMAND
