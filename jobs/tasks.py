from celery import shared_task

from . import services
from .models import stale_after


@shared_task(
    bind=True,
    name="jobs.run_job",
    # Re-running is safe: handlers upsert idempotently and resume from their checkpoint, so a message
    # whose worker was killed is redelivered and picked up again.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=10,
)
def run_job_task(self, job_id: int) -> str:
    try:
        return services.run_job(job_id)
    except services.JobBusy as exc:
        # Another worker holds it, or a redelivery arrived before the dead worker's heartbeat went stale.
        raise self.retry(exc=exc, countdown=int(stale_after().total_seconds()) + 5) from exc


@shared_task(name="jobs.fail_stale_jobs", expires=300, time_limit=120, soft_time_limit=100)
def fail_stale_jobs_task() -> int:
    return services.fail_stale_jobs()
