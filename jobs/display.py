"""How job figures read to staff. The admin renders these, and the JSON poll sends the same strings,
so the live page and a reload never disagree."""

from django.conf import settings
from django.utils import formats, timezone
from django.utils.translation import gettext, pgettext, pgettext_lazy

from .models import BackgroundJob, JobStatus

# Shopify's BulkOperationStatus, as the dashboard shows it after "Shopify".
SHOPIFY_BULK_STAGES = {
    "CREATED": pgettext_lazy("Shopify bulk operation", "created"),
    "RUNNING": pgettext_lazy("Shopify bulk operation", "running"),
    "CANCELING": pgettext_lazy("Shopify bulk operation", "canceling"),
    "CANCELED": pgettext_lazy("Shopify bulk operation", "canceled"),
    "FAILED": pgettext_lazy("Shopify bulk operation", "failed"),
    "EXPIRED": pgettext_lazy("Shopify bulk operation", "expired"),
}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return gettext("%(s)ds") % {"s": s}
    if s < 3600:
        return gettext("%(m)dm %(s)02ds") % {"m": s // 60, "s": s % 60}
    return gettext("%(h)dh %(m)02dm") % {"h": s // 3600, "m": (s % 3600) // 60}


def number(n: int | None) -> str:
    # Grouped the way the active language groups (1,234 in English, 1.234 in Vietnamese).
    return "?" if n is None else formats.number_format(n, force_grouping=True)


def local_datetime(value) -> str:
    """A moment in local time, to the second, in the active language's short format (dd/mm/yyyy in Vietnamese)."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{formats.date_format(local, 'SHORT_DATE_FORMAT')} {local:%H:%M:%S}"


def decimal(value: float, places: int = 1) -> str:
    """A rounded figure in the active language (5.0 in English, 5,0 in Vietnamese)."""
    return formats.number_format(round(value, places), places, force_grouping=True)


def job_display(job: BackgroundJob) -> dict[str, str | float | bool | None]:
    percent = job.percent
    if job.total:
        progress = f"{number(job.processed)} / {number(job.total)} ({decimal(percent)}%)"
    else:
        progress = gettext("%(n)s processed") % {"n": number(job.processed)}
    meta = job.metadata or {}
    if meta.get("path"):  # how a pull reads its upstream (Shopify: bulk operation or paged) and, for bulk, its stage
        stage = meta.get("stage")
        path = {"bulk": pgettext("how a pull reads", "bulk"), "paged": pgettext("how a pull reads", "paged")}.get(
            meta["path"], meta["path"])
        shown_stage = SHOPIFY_BULK_STAGES.get(stage, str(stage or "").lower())
        upstream = path + (f" · Shopify {shown_stage}" if stage and stage != "COMPLETED" else "")
        if stage in ("CREATED", "RUNNING") and meta.get("object_count") is not None:
            upstream += " (" + gettext("%(n)s ready") % {"n": number(meta["object_count"])} + ")"
        progress = f"{progress} · {upstream}"
    speed = job.speed
    heartbeat = job.heartbeat_age_seconds
    status = job.get_status_display()
    if job.cancel_requested and job.is_active:
        status = gettext("Cancelling")
    elif job.handback_requested and job.is_active:
        status = gettext("Handing back")
    elif job.is_stale:
        status = gettext("Stale")
    if job.attempts > 1:  # rescued after its worker died (or handed back): say which run this is
        status = gettext("%(status)s · attempt %(n)d of %(max)d") % {
            "status": str(status), "n": job.attempts, "max": settings.SHOPBRIDGE["MAX_RESCUES"] + 1}
    return {
        "status": str(status),
        "status_class": "stale" if job.is_stale else job.status.lower(),
        "progress": progress,
        "percent": percent,
        "counts": gettext("%(ok)s ok / %(failed)s failed") % {"ok": number(job.successful),
                                                              "failed": number(job.failed)},
        "speed": f"{decimal(speed)}/s" if speed else "—",
        "eta": duration(job.eta_seconds),
        # Local time (TIME_ZONE, Asia/Ho_Chi_Minh) in the language's format: dd/mm/yyyy in Vietnamese.
        "started": local_datetime(job.started_at),
        "elapsed": duration(job.elapsed_seconds),
        "heartbeat": gettext("%(duration)s ago") % {"duration": duration(heartbeat)} if heartbeat is not None else "—",
        "is_stale": job.is_stale,
        "is_active": job.is_active,
        # Only a running job without a known total gets the moving "working" bar.
        "indeterminate": percent is None and job.status == JobStatus.RUNNING,
    }
