"""Celery entry points for beat schedules and workflows; each is a thin caller of the services."""

import logging

from celery import shared_task

from jobs import services as jobs
from jobs.models import StartedBy

from .services.pulls import start_customer_pull

log = logging.getLogger(__name__)


@shared_task(name="customers.pull", time_limit=3600, soft_time_limit=3500)
def pull_customers(system: str, mode: str = "all", filters: dict | None = None, query: str | None = None) -> dict:
    """Start a customer pull from a schedule. A refused pull (already running) is logged, not an error:
    the running one does the work."""
    try:
        started = start_customer_pull(system, mode, filters=filters, query=query, started_by=StartedBy.BEAT)
    except jobs.PullRefused as exc:
        log.info("scheduled %s %s customer pull skipped: %s", system, mode, exc)
        return {"refused": str(exc)}
    return {"job_id": started.job.pk, "progress_id": started.progress_id}
