"""Jobs, pulls and refusals as JSON-ready dicts (the API and the dashboard's poll send these)."""

from __future__ import annotations

from typing import Any

from .display import job_display
from .errors import PullRefused
from .models import BackgroundJob, PullProgress
from .registry import job_type_label


def pull_as_dict(p: PullProgress) -> dict[str, Any]:
    return {
        "progress_id": p.progress_id,
        "system": p.system,
        "kind": p.kind,
        "state": p.state_label,
        "job_id": p.job_id,
        "items_done": p.items_done,
        "started_at": p.started_at.isoformat(),
        "last_pulled_at": p.last_pulled_at.isoformat(),
        "heartbeat_age_seconds": round(p.heartbeat_age_seconds, 1),
        "filters": p.filters,
    }


def refusal_as_dict(exc: PullRefused) -> dict[str, Any]:
    data: dict[str, Any] = {"error": str(exc)}
    if exc.holder is not None:
        data["running"] = pull_as_dict(exc.holder)
    return data


def job_as_dict(job: BackgroundJob) -> dict[str, Any]:
    def r(x, n=1):
        return None if x is None else round(x, n)

    return {
        "id": job.pk,
        "type": job.type,
        "type_label": job_type_label(job.type),
        "status": job.status,
        "status_label": job.get_status_display(),
        "total": job.total,
        "processed": job.processed,
        "successful": job.successful,
        "failed": job.failed,
        "percent": r(job.percent),
        "speed": r(job.speed),
        "eta_seconds": r(job.eta_seconds, 0),
        "elapsed_seconds": r(job.elapsed_seconds, 0),
        "heartbeat_age_seconds": r(job.heartbeat_age_seconds, 0),
        "is_stale": job.is_stale,
        "cancel_requested": job.cancel_requested,
        "attempts": job.attempts,
        "rescues": job.metadata.get("rescues", []),
        "started_by": job.started_by_label,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "error": job.error.split("\n", 1)[0] if job.error else "",
        "metadata": job.metadata,
        "display": job_display(job),
    }
