"""Beat entry points: thin callers of the pull framework (the schedules are in pancake/apps.py)."""

import logging

from celery import shared_task

from jobs.errors import PullRefused
from jobs.models import StartedBy
from jobs.pull_specs import start_pull

from .services.pulls import BACKFILL, INCREMENTAL, KIND, SYSTEM

log = logging.getLogger(__name__)


def _start(mode: str, page_id: str | None) -> dict:
    try:
        started = start_pull(SYSTEM, KIND, mode, filters={"page_id": page_id} if page_id else {},
                             started_by=StartedBy.BEAT)
    except PullRefused as exc:  # the previous run is still going: not a failure, it covers this one
        log.info("pancake %s pull not started: %s", mode, exc)
        return {"refused": str(exc)}
    return {"job_id": started.job.pk, "progress_id": started.progress_id}


@shared_task(name="pancake.pull_incremental", time_limit=600, soft_time_limit=570)
def pull_incremental(page_id: str | None = None) -> dict:
    return _start(INCREMENTAL, page_id)


@shared_task(name="pancake.pull_backfill", time_limit=600, soft_time_limit=570)
def pull_backfill(page_id: str | None = None) -> dict:
    return _start(BACKFILL, page_id)
