"""A job's life: created (committed before any work), started here or on a worker, progress per batch,
cancelled at a batch boundary, finished; retried with the same parameters; failed when its worker died.

    job = create_job("PULL_…", params={...}, started_by=StartedBy.USER, user=request.user)
    launch(job)                         # queued after commit; a worker runs run_job(job.id)

``run_job`` hands a ``JobContext`` to the handler registered for the job's type. The handler reports
progress per batch with ``ctx.progress(...)`` (one autocommitted UPDATE, so other connections see it at once)
and learns there that staff cancelled it.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .errors import JobBusy, JobCancelled, PullSuperseded
from .models import BackgroundJob, JobStatus, PullProgress, PullStatus, StartedBy, stale_after
from .registry import is_registered, job_kind

log = logging.getLogger(__name__)


# --- creating and starting ---------------------------------------------------------------------------
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
    if not is_registered(job_type):
        raise ValueError(f"unknown job type {job_type!r}: no app registered it")
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


def launch(job: BackgroundJob, *, run_now: bool = False, start_now: bool = True) -> BackgroundJob:
    """Start a created job: ``run_now`` runs it here and returns it finished; otherwise ``start_now`` queues it
    for a worker, and ``start_now=False`` leaves it PENDING for the caller to run (``--wait``, workflows)."""
    if run_now:
        run_job(job.pk)
        job.refresh_from_db()
    elif start_now:
        enqueue(job)
    return job


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
        """Merge values into the metadata and save them now (with a heartbeat)."""
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
    kind = job_kind(job.type)
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
    kind = job_kind(job.type)
    if kind is not None and kind.start is not None:
        return kind.start(params=dict(job.params), started_by=started_by, user=user, retry_of=job,
                          force_restart=force_restart)
    return launch(create_job(job.type, params=dict(job.params), started_by=started_by, user=user, retry_of=job))


def may_start(user, job_type: str) -> bool:
    """Whether ``user`` holds the permission the job's kind declares for starting it (and so retrying it)."""
    kind = job_kind(job_type)
    return kind is not None and (kind.permission is None or user.has_perm(kind.permission))


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
