"""The one write layer for jobs and pull claims. Admin actions, views, tasks and commands call these.

Lifecycle of a job::

    job = create_job(JobType.X, params={...}, started_by=StartedBy.USER, user=request.user)
    enqueue(job)                       # after commit, a worker runs jobs.tasks.run_job(job.id)

The worker calls ``run_job(job_id)``, which hands a ``JobContext`` to the handler registered for the
job's type. The handler reports progress per batch with ``ctx.progress(...)`` (its own short
transaction, so other connections see it at once) and learns there that staff cancelled it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .display import job_display
from .models import (
    BackgroundJob,
    JobStatus,
    PullProgress,
    PullStatus,
    StartedBy,
    stale_after,
)

log = logging.getLogger(__name__)


# --- errors ---------------------------------------------------------------------------------------
class JobCancelled(Exception):  # noqa: N818 - a signal, not a failure
    """Raised inside a handler at a batch boundary when staff cancelled the job."""


class PullSuperseded(Exception):  # noqa: N818
    """The pull was force-restarted, reset or taken over: this worker must stop."""


class PullRefused(Exception):
    """A pull could not start. ``message`` is shown to staff, ``holder`` is the pull in the way."""

    def __init__(self, message: str, holder: PullProgress | None = None):
        super().__init__(message)
        self.holder = holder

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"error": str(self)}
        if self.holder is not None:
            data["running"] = pull_as_dict(self.holder)
        return data


class PullConflict(PullRefused):
    pass


class PullCapReached(PullRefused):
    pass


# --- handler registry -----------------------------------------------------------------------------
Handler = Callable[["JobContext"], Any]
Starter = Callable[..., BackgroundJob]


@dataclass
class _JobKind:
    run: Handler
    start: Starter | None = None  # how to start a fresh job with the same params (retry)


_REGISTRY: dict[str, _JobKind] = {}


def register_job_type(job_type: str, *, run: Handler, start: Starter | None = None) -> None:
    """Apps register what runs a job type (called from their AppConfig.ready)."""
    _REGISTRY[job_type] = _JobKind(run=run, start=start)


# --- creating and enqueueing ---------------------------------------------------------------------
def create_job(
    job_type: str,
    *,
    params: dict | None = None,
    started_by: str = StartedBy.SYSTEM,
    user=None,
    total: int | None = None,
    metadata: dict | None = None,
    retry_of: BackgroundJob | None = None,
) -> BackgroundJob:
    """Create a PENDING job. Outside a transaction it is committed on return, so the dashboard sees it."""
    return BackgroundJob.objects.create(
        type=job_type,
        params=params or {},
        started_by=started_by,
        started_by_user=user if (user is not None and user.is_authenticated) else None,
        total=total,
        metadata=metadata or {},
        retry_of=retry_of,
    )


def enqueue(job: BackgroundJob, *, countdown: int | None = None) -> None:
    """Send the job to a worker once the transaction that created it has committed."""
    from .tasks import run_job_task

    def send():
        result = run_job_task.apply_async(args=[job.pk], countdown=countdown)
        BackgroundJob.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")

    transaction.on_commit(send)


# --- running --------------------------------------------------------------------------------------
class JobContext:
    """What a handler gets: its job's params and a way to report progress batch by batch."""

    def __init__(self, job: BackgroundJob):
        self.job = job
        self.job_id = job.pk
        self.params: dict = dict(job.params)
        self.metadata: dict = dict(job.metadata)
        self.processed = job.processed
        self.successful = job.successful
        self.failed = job.failed
        self.total = job.total

    def progress(
        self,
        *,
        processed: int | None = None,
        successful: int | None = None,
        failed: int | None = None,
        total: int | None = None,
        metadata: dict | None = None,
    ) -> None:
        """Write counts, metadata and the heartbeat in one short UPDATE; raise JobCancelled if asked to stop."""
        if processed is not None:
            self.processed = processed
        if successful is not None:
            self.successful = successful
        if failed is not None:
            self.failed = failed
        if total is not None:
            self.total = total
        if metadata:
            self.metadata.update(metadata)
        elapsed = (timezone.now() - (self.job.started_at or timezone.now())).total_seconds()
        if elapsed > 0 and self.processed:
            self.metadata["speed"] = round(self.processed / elapsed, 1)
        BackgroundJob.objects.filter(pk=self.job_id).update(
            processed=self.processed,
            successful=self.successful,
            failed=self.failed,
            total=self.total,
            metadata=self.metadata,
            heartbeat_at=timezone.now(),
        )
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if BackgroundJob.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise JobCancelled()

    def set_metadata(self, **values) -> None:
        """Merge values into the metadata and save them with the next progress call (or now)."""
        self.metadata.update(values)
        BackgroundJob.objects.filter(pk=self.job_id).update(metadata=self.metadata, heartbeat_at=timezone.now())


def _claim_for_run(job_id: int) -> BackgroundJob | None:
    """PENDING → RUNNING atomically. A RUNNING job whose heartbeat is stale (its worker died and the
    broker redelivered the message) is taken over. Anything else is left alone."""
    now = timezone.now()
    claimed = BackgroundJob.objects.filter(
        Q(status=JobStatus.PENDING) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=now - stale_after()),
        pk=job_id,
        cancel_requested=False,
    ).update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, error="")
    if not claimed:
        return None
    return BackgroundJob.objects.get(pk=job_id)


class JobBusy(Exception):  # noqa: N818
    """The job is RUNNING with a fresh heartbeat elsewhere; try again after the stale window."""


def run_job(job_id: int) -> str:
    """Run a job's handler. Idempotent: a finished job is skipped, a live one elsewhere raises JobBusy."""
    job = _claim_for_run(job_id)
    if job is None:
        current = BackgroundJob.objects.filter(pk=job_id).first()
        if current is None:
            log.warning("job %s no longer exists", job_id)
            return "missing"
        if current.status == JobStatus.PENDING and current.cancel_requested:
            _finish(job_id, JobStatus.CANCELLED)
            return JobStatus.CANCELLED
        if current.status == JobStatus.RUNNING:
            raise JobBusy(f"job {job_id} is running elsewhere (heartbeat {current.heartbeat_at})")
        return current.status
    kind = _REGISTRY.get(job.type)
    if kind is None:
        _finish(job_id, JobStatus.FAILED, error=f"No handler is registered for job type {job.type}.")
        return JobStatus.FAILED
    ctx = JobContext(job)
    log.info("job %s (%s) started", job_id, job.type)
    try:
        kind.run(ctx)
    except JobCancelled:
        _finish(job_id, JobStatus.CANCELLED, ctx=ctx)
        log.info("job %s cancelled at a batch boundary", job_id)
        return JobStatus.CANCELLED
    except PullSuperseded:
        _finish(job_id, JobStatus.CANCELLED, ctx=ctx, error="Stopped: the pull was force-restarted or reset.")
        log.info("job %s stopped: its pull was superseded", job_id)
        return JobStatus.CANCELLED
    except Exception as exc:
        log.exception("job %s (%s) failed", job_id, job.type)
        _finish(job_id, JobStatus.FAILED, ctx=ctx, error=describe_error(exc))
        return JobStatus.FAILED
    _finish(job_id, JobStatus.COMPLETED, ctx=ctx)
    log.info("job %s (%s) completed: %s processed", job_id, job.type, ctx.processed)
    return JobStatus.COMPLETED


def describe_error(exc: BaseException) -> str:
    """A one-line reason for staff, then the traceback's last frames for the developer."""
    tb = "".join(traceback.format_exception(exc, limit=-4))
    return f"{type(exc).__name__}: {exc}\n\n{tb}"[:8000]


def _finish(job_id: int, status: str, *, ctx: JobContext | None = None, error: str = "") -> None:
    values: dict[str, Any] = {"status": status, "completed_at": timezone.now(), "heartbeat_at": timezone.now()}
    if error:
        values["error"] = error
    if ctx is not None:
        values.update(
            processed=ctx.processed, successful=ctx.successful, failed=ctx.failed, total=ctx.total,
            metadata=ctx.metadata,
        )
    BackgroundJob.objects.filter(pk=job_id).update(**values)


# --- staff actions --------------------------------------------------------------------------------
def cancel_job(job: BackgroundJob) -> bool:
    """A PENDING job is cancelled at once; a RUNNING one stops at its next batch boundary."""
    if BackgroundJob.objects.filter(pk=job.pk, status=JobStatus.PENDING).update(
        status=JobStatus.CANCELLED, cancel_requested=True, completed_at=timezone.now()
    ):
        PullProgress.objects.filter(job_id=job.pk, status=PullStatus.RUNNING).update(status=PullStatus.CANCELLED)
        return True
    return bool(BackgroundJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True))


def retry_job(job: BackgroundJob, *, user=None, started_by: str = StartedBy.USER,
              force_restart: bool = False) -> BackgroundJob:
    """Start a new job with the same type and params (pulls go through their claim again)."""
    kind = _REGISTRY.get(job.type)
    if kind is not None and kind.start is not None:
        return kind.start(params=dict(job.params), started_by=started_by, user=user, retry_of=job,
                          force_restart=force_restart)
    new = create_job(job.type, params=dict(job.params), started_by=started_by, user=user, retry_of=job)
    enqueue(new)
    return new


def fail_stale_jobs(queryset=None) -> int:
    """Mark RUNNING jobs without a heartbeat for the stale window as FAILED (their worker died)."""
    cutoff = timezone.now() - stale_after()
    qs = (queryset if queryset is not None else BackgroundJob.objects.all()).filter(
        status=JobStatus.RUNNING
    ).filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    ids = list(qs.values_list("pk", flat=True))
    if not ids:
        return 0
    msg = f"No heartbeat for more than {int(stale_after().total_seconds())} s: the worker probably died."
    n = BackgroundJob.objects.filter(pk__in=ids, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, error=msg, completed_at=timezone.now()
    )
    PullProgress.objects.filter(job_id__in=ids, status=PullStatus.RUNNING).update(status=PullStatus.FAILED, error=msg)
    return n


# --- pull progress: ids -----------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def make_progress_id(system: str, kind: str, filters: dict | str | None = None) -> str:
    """``nhanh_customers`` or ``nhanh_customers_<hash>``: the whole canonical filter is hashed, so
    different filters always get different ids and the same filter always the same one."""
    base = f"{system}_{kind}"
    if isinstance(filters, dict):
        filters = {k: v for k, v in filters.items() if v not in (None, "", [], {})}
    if not filters:
        return base
    digest = hashlib.sha256(canonical_json(filters).encode()).hexdigest()[:16]
    return f"{base}_{digest}"


# --- pull progress: claims ------------------------------------------------------------------------
@dataclass
class PullClaim:
    progress: PullProgress
    job: BackgroundJob
    resumed: bool  # True when the run continues from a checkpoint left by a crashed/stale run


def _serialize_claims() -> None:
    """Take the claims lock for this transaction so the concurrency cap is counted atomically.

    The per-id claim below is a conditional UPDATE and is race-free on its own; the cap spans rows,
    so claims are serialized: PostgreSQL by a transaction-scoped advisory lock, SQLite because every
    transaction starts IMMEDIATE (it holds the database's write lock from BEGIN).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [0x5B_0B_7D_6E])


def running_pulls():
    cutoff = timezone.now() - stale_after()
    return PullProgress.objects.filter(status=PullStatus.RUNNING, last_pulled_at__gte=cutoff)


def claim_pull(
    *,
    system: str,
    kind: str,
    filters: dict | None,
    job_type: str,
    params: dict,
    started_by: str = StartedBy.SYSTEM,
    user=None,
    force_restart: bool = False,
    retry_of: BackgroundJob | None = None,
    progress_id: str | None = None,
) -> PullClaim:
    """Atomically claim a progress id and create the pull's job, or raise PullRefused.

    - same id running (heartbeat within the stale window) → PullConflict, unless ``force_restart``;
    - more than MAX_CONCURRENT_PULLS running → PullCapReached;
    - a previous run that crashed or went stale left a checkpoint → the new run resumes from it;
      a completed run or a force restart starts fresh.
    """
    progress_id = progress_id or make_progress_id(system, kind, filters)
    cap = settings.SHOPBRIDGE["MAX_CONCURRENT_PULLS"]
    now = timezone.now()
    cutoff = now - stale_after()
    with transaction.atomic():
        _serialize_claims()
        others = running_pulls().exclude(progress_id=progress_id)
        if others.count() >= cap:
            names = ", ".join(others.values_list("progress_id", flat=True)[:cap])
            raise PullCapReached(
                f"{cap} pulls are already running ({names}); the limit is {cap}. "
                "Wait for one to finish or cancel one."
            )
        job = create_job(
            job_type, params={**params, "progress_id": progress_id}, started_by=started_by, user=user,
            metadata={"progress_id": progress_id, "filters": filters or {}}, retry_of=retry_of,
        )
        PullProgress.objects.bulk_create(
            [PullProgress(progress_id=progress_id, system=system, kind=kind, filters=filters or {},
                          status=PullStatus.COMPLETED, last_pulled_at=now)],
            ignore_conflicts=True,
        )
        free = Q(status__in=[PullStatus.COMPLETED, PullStatus.FAILED, PullStatus.CANCELLED]) | Q(
            last_pulled_at__lt=cutoff
        )
        claimable = PullProgress.objects.filter(progress_id=progress_id)
        if not force_restart:
            claimable = claimable.filter(free)
        previous = PullProgress.objects.filter(progress_id=progress_id).values(
            "status", "checkpoint", "items_done"
        ).first()
        resumable = bool(
            previous and previous["status"] != PullStatus.COMPLETED and previous["checkpoint"] and not force_restart
        )
        updated = claimable.update(
            status=PullStatus.RUNNING,
            run_token=uuid.uuid4(),
            job=job,
            filters=filters or {},
            started_at=now,
            last_pulled_at=now,
            completed_at=None,
            error="",
            **({} if resumable else {"checkpoint": {}, "items_done": 0}),
        )
        if not updated:
            holder = PullProgress.objects.select_related("job").get(progress_id=progress_id)
            raise PullConflict(_conflict_message(holder), holder)
    progress = PullProgress.objects.get(progress_id=progress_id)
    if force_restart:
        log.warning("pull %s force-restarted by %s", progress_id, started_by)
    return PullClaim(progress=progress, job=job, resumed=resumable)


def _conflict_message(holder: PullProgress) -> str:
    started = timezone.localtime(holder.started_at).strftime("%Y-%m-%d %H:%M:%S")
    job = f" (job #{holder.job_id})" if holder.job_id else ""
    return (
        f"Pull {holder.progress_id} is already running{job} since {started}, "
        f"last heartbeat {int(holder.heartbeat_age_seconds)} s ago. "
        "Wait for it to finish, or force a restart."
    )


def pull_checkpoint(progress_id: str, run_token, *, checkpoint: dict | None = None,
                    items_done: int | None = None) -> None:
    """Beat the pull's heart and move its checkpoint; call it inside the transaction that wrote the
    batch, so the checkpoint never gets ahead of the rows it covers. Raises PullSuperseded when this
    run no longer holds the id (force restart, reset, takeover)."""
    values: dict[str, Any] = {"last_pulled_at": timezone.now()}
    if checkpoint is not None:
        values["checkpoint"] = checkpoint
    if items_done is not None:
        values["items_done"] = items_done
    if not PullProgress.objects.filter(
        progress_id=progress_id, run_token=run_token, status=PullStatus.RUNNING
    ).update(**values):
        raise PullSuperseded(progress_id)


def finish_pull(progress_id: str, run_token, status: str, *, error: str = "") -> bool:
    """Record how the run ended; a superseded run changes nothing."""
    values: dict[str, Any] = {"status": status, "last_pulled_at": timezone.now(), "error": error[:2000]}
    if status == PullStatus.COMPLETED:
        values["completed_at"] = timezone.now()
        values["checkpoint"] = {}
    return bool(PullProgress.objects.filter(progress_id=progress_id, run_token=run_token).update(**values))


@contextmanager
def holding_pull(ctx: JobContext):
    """For pull handlers: yields the PullProgress this job holds, and records how the run ended.

    Raises PullSuperseded at once if another run holds the id now (force restart, reset, takeover).
    """
    progress_id = ctx.params["progress_id"]
    progress = PullProgress.objects.filter(
        progress_id=progress_id, job_id=ctx.job_id, status=PullStatus.RUNNING
    ).first()
    if progress is None:
        raise PullSuperseded(progress_id)
    token = progress.run_token
    try:
        yield progress
    except PullSuperseded:
        raise
    except JobCancelled:
        finish_pull(progress_id, token, PullStatus.CANCELLED, error="Cancelled by staff.")
        raise
    except BaseException as exc:
        finish_pull(progress_id, token, PullStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        finish_pull(progress_id, token, PullStatus.COMPLETED)


def reset_pulls(*, system: str | None = None, kind: str | None = None, progress_ids=None) -> int:
    """Delete progress rows (their checkpoints too). A worker still running one stops at its next batch."""
    qs = PullProgress.objects.all()
    if system:
        qs = qs.filter(system=system)
    if kind:
        qs = qs.filter(kind=kind)
    if progress_ids is not None:
        qs = qs.filter(progress_id__in=list(progress_ids))
    deleted, _ = qs.delete()
    return deleted


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


def job_as_dict(job: BackgroundJob) -> dict[str, Any]:
    def r(x, n=1):
        return None if x is None else round(x, n)

    return {
        "id": job.pk,
        "type": job.type,
        "type_label": job.get_type_display(),
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
        "started_by": job.started_by_label,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "error": job.error.split("\n", 1)[0] if job.error else "",
        "metadata": job.metadata,
        "display": job_display(job),
    }

