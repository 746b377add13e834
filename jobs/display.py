"""How job figures read to staff. The admin renders these, and the JSON poll sends the same strings,
so the live page and a reload never disagree."""

from django.conf import settings
from django.utils import timezone

from .models import BackgroundJob, JobStatus


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def number(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def job_display(job: BackgroundJob) -> dict[str, str | float | bool | None]:
    percent = job.percent
    if job.total:
        progress = f"{number(job.processed)} / {number(job.total)} ({percent:.1f}%)"
    else:
        progress = f"{number(job.processed)} processed"
    meta = job.metadata or {}
    if meta.get("path"):  # how a pull reads its upstream (Shopify: bulk operation or paged) and, for bulk, its stage
        stage = meta.get("stage")
        upstream = f"{meta['path']}" + (f" · Shopify {stage.lower()}" if stage and stage != "COMPLETED" else "")
        if stage in ("CREATED", "RUNNING") and meta.get("object_count") is not None:
            upstream += f" ({number(meta['object_count'])} ready)"
        progress = f"{progress} · {upstream}"
    speed = job.speed
    heartbeat = job.heartbeat_age_seconds
    status = job.get_status_display()
    if job.cancel_requested and job.is_active:
        status = "Cancelling"
    elif job.handback_requested and job.is_active:
        status = "Handing back"
    elif job.is_stale:
        status = "Stale"
    if job.attempts > 1:  # rescued after its worker died (or handed back): say which run this is
        status = f"{status} · attempt {job.attempts} of {settings.SHOPBRIDGE['MAX_RESCUES'] + 1}"
    return {
        "status": status,
        "status_class": "stale" if job.is_stale else job.status.lower(),
        "progress": progress,
        "percent": percent,
        "counts": f"{number(job.successful)} ok / {number(job.failed)} failed",
        "speed": f"{speed:,.1f}/s" if speed else "—",
        "eta": duration(job.eta_seconds),
        "started": timezone.localtime(job.started_at).strftime("%Y-%m-%d %H:%M:%S") if job.started_at else "—",
        "elapsed": duration(job.elapsed_seconds),
        "heartbeat": (duration(heartbeat) + " ago") if heartbeat is not None else "—",
        "is_stale": job.is_stale,
        "is_active": job.is_active,
        # Only a running job without a known total gets the moving "working" bar.
        "indeterminate": percent is None and job.status == JobStatus.RUNNING,
    }
