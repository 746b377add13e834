"""Celery entry points for beat schedules and workflows; each is a thin caller of the services.

Workflow steps run their job inside the task (not queued separately) so that the next step of a chain
or the callback of a chord starts only when the work is done. A step whose job fails raises, and the
chain stops there; a pull refused because the same pull is already running is not a failure.
"""

import logging

from celery import chain, chord, group, shared_task

from jobs import services as jobs
from jobs.models import BackgroundJob, JobStatus, StartedBy
from jobs.pull_specs import start_pull

from .services.matching import start_auto_match
from .services.sync import start_sync

log = logging.getLogger(__name__)

STEP_LIMITS = {"time_limit": 6 * 3600, "soft_time_limit": 6 * 3600 - 60}


class WorkflowStepFailed(Exception):
    pass


def _finished(job: BackgroundJob) -> dict:
    job.refresh_from_db()
    if job.status != JobStatus.COMPLETED:
        reason = job.error.splitlines()[0] if job.error else ""
        raise WorkflowStepFailed(f"job #{job.pk} {job.type} {job.status}: {reason}")
    return {"job_id": job.pk, "status": job.status}


@shared_task(name="customers.pull", **STEP_LIMITS)
def pull_customers(system: str, mode: str = "all", filters: dict | None = None, query: str | None = None) -> dict:
    """Start a customer pull from a schedule (queued as its own job)."""
    try:
        filters = {**(filters or {}), **({"query": query} if query else {})}
        started = start_pull(system, "customers", mode, filters=filters, started_by=StartedBy.BEAT)
    except jobs.PullRefused as exc:
        log.info("scheduled %s %s customer pull skipped: %s", system, mode, exc)
        return {"refused": str(exc)}
    return {"job_id": started.job.pk, "progress_id": started.progress_id}


@shared_task(name="customers.workflow_pull", **STEP_LIMITS)
def workflow_pull(system: str, mode: str) -> dict:
    """A pull as a workflow step: runs here, so the chain waits for it."""
    try:
        started = start_pull(system, "customers", mode, started_by=StartedBy.BEAT, start_now=False)
    except jobs.PullRefused as exc:
        log.info("workflow: %s %s pull already running, continuing: %s", system, mode, exc)
        return {"refused": str(exc)}
    jobs.run_job(started.job.pk)
    return _finished(started.job)


@shared_task(name="customers.workflow_automatch", **STEP_LIMITS)
def workflow_automatch(_previous=None) -> dict:
    return _finished(start_auto_match(started_by=StartedBy.BEAT, run_now=True))


@shared_task(name="customers.sync_changed", **STEP_LIMITS)
def sync_changed(_previous=None) -> dict:
    """Re-sync matched customers whose total changed since their last sync (not forced)."""
    return _finished(start_sync(scope="changed", force=False, started_by=StartedBy.BEAT, run_now=True))


@shared_task(name="customers.workflow_daily", expires=3600, time_limit=300, soft_time_limit=280)
def workflow_daily() -> str:
    flow = chain(workflow_pull.si("nhanh", "new"), workflow_pull.si("shopify", "all"),
                 workflow_automatch.si(), sync_changed.si())
    return flow.apply_async().id


@shared_task(name="customers.workflow_weekly", expires=3600, time_limit=300, soft_time_limit=280)
def workflow_weekly() -> str:
    # The chord's callback runs once both pulls finished (no polling loop of ours).
    flow = chord(group(workflow_pull.si("nhanh", "all"), workflow_pull.si("shopify", "all")),
                 workflow_automatch.s())
    return flow.apply_async().id
