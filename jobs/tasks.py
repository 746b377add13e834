import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from . import services

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="jobs.run_job",
    # Re-running is safe: handlers upsert idempotently and resume from their checkpoint. A message whose whole
    # worker died stays unacknowledged and comes back after the broker's visibility timeout; by then the job
    # has been rescued (or finished) and the claim turns that late delivery away.
    acks_late=True,
    reject_on_worker_lost=True,
)
def run_job_task(self, job_id: int) -> str:
    try:
        return services.run_job(job_id, worker=self.request.hostname or "")
    except services.JobBusy:
        # Another worker runs it now (a rescue, or a redelivery of a message whose worker lived): nothing to do.
        log.info("job %s is running elsewhere; this delivery exits", job_id)
        return "busy"


@shared_task(name="jobs.rescue_stale_jobs", expires=50, time_limit=120, soft_time_limit=100)
def rescue_stale_jobs_task() -> dict:
    return services.rescue_stale_jobs()


@worker_ready.connect
def _rescue_on_start(sender=None, **_kwargs):
    """A starting worker looks for orphans at once: stale jobs, and those it held itself before it restarted."""
    hostname = getattr(sender, "hostname", None)
    try:
        counts = services.rescue_stale_jobs(worker=hostname)
    except Exception:  # a worker must start even when the database is briefly away; beat will rescue later
        log.exception("rescue at worker start failed")
        return
    if counts:
        log.warning("worker %s start: stale jobs %s", hostname, counts)
    from django.db import connections

    connections.close_all()  # the prefork children must not share the parent's connection


@worker_shutting_down.connect
def _hand_back_on_shutdown(sender=None, sig=None, how=None, **_kwargs):
    """Warm shutdown (SIGTERM): running jobs stop at their next batch and go back to the queue, instead of
    holding the deploy until they finish. A cold shutdown (a second signal) is Celery's to handle."""
    if how != "Warm" or not sender:
        return
    try:
        n = services.request_handback(str(sender))
    except Exception:
        log.exception("could not ask running jobs to hand back")
        return
    if n:
        log.warning("worker %s shutting down: %s running job(s) asked to stop at their next batch", sender, n)
    from django.db import connections

    connections.close_all()


@shared_task(bind=True, name="jobs.start_pull_when_free", max_retries=180, time_limit=60, soft_time_limit=50)
def start_pull_when_free_task(self, system: str, kind: str, mode: str | None = None) -> dict:
    """Start a pull as soon as the concurrent-pull cap leaves room (``manage.py demo`` queues more pulls than the
    cap allows). Idempotent: a pull with the same id already running counts as started."""
    from .errors import PullCapReached, PullConflict
    from .models import StartedBy
    from .pull_specs import start_pull

    try:
        started = start_pull(system, kind, mode, started_by=StartedBy.SYSTEM)
    except PullCapReached as exc:
        raise self.retry(countdown=10) from exc
    except PullConflict as exc:
        return {"started": False, "reason": str(exc)}
    return {"started": True, "job_id": started.job.pk, "progress_id": started.progress_id}
