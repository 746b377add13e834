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
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext

from .errors import JobBusy, JobCancelled, JobHandedBack, JobSuperseded, PullSuperseded
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
        self.attempt = job.attempts
        self.params: dict = dict(job.params)
        self.metadata: dict = dict(job.metadata)
        self.processed = job.processed
        self.successful = job.successful
        self.failed = job.failed
        self.total = job.total

    @property
    def resumed(self) -> bool:
        """This run continues one that stopped (a rescue after its worker died, or a hand-back)."""
        return self.attempt > 1

    def _mine(self):
        return BackgroundJob.objects.filter(pk=self.job_id, attempts=self.attempt)

    def progress(
        self,
        *,
        processed: int | None = None,
        successful: int | None = None,
        failed: int | None = None,
        total: int | None = None,
        metadata: dict | None = None,
    ) -> None:
        """Write counts, metadata and the heartbeat in one short UPDATE; raise JobCancelled if asked to stop,
        JobHandedBack when the worker is shutting down, JobSuperseded when a rescue took the job over."""
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
        if not self._mine().update(
            processed=self.processed,
            successful=self.successful,
            failed=self.failed,
            total=self.total,
            metadata=self.metadata,
            heartbeat_at=timezone.now(),
        ):
            raise JobSuperseded(f"job {self.job_id} attempt {self.attempt}")
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise JobCancelled / JobHandedBack when staff cancelled the job or its worker is shutting down."""
        flags = BackgroundJob.objects.filter(pk=self.job_id).values_list(
            "cancel_requested", "handback_requested").first()
        if flags and flags[0]:
            raise JobCancelled()
        if flags and flags[1]:
            raise JobHandedBack()

    def set_metadata(self, **values) -> None:
        """Merge values into the metadata and save them now (with a heartbeat)."""
        self.metadata.update(values)
        if not self._mine().update(metadata=self.metadata, heartbeat_at=timezone.now()):
            raise JobSuperseded(f"job {self.job_id} attempt {self.attempt}")


def _is_stale():
    cutoff = timezone.now() - stale_after()
    return Q(status=JobStatus.RUNNING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True,
                                                                        started_at__lt=cutoff))


def _claim_for_run(job_id: int, worker: str) -> BackgroundJob | None:
    """PENDING → RUNNING atomically, as the next attempt. Anything else is left alone (a stale RUNNING job is
    rescued first, which counts against its bound)."""
    now = timezone.now()
    claimed = BackgroundJob.objects.filter(pk=job_id, status=JobStatus.PENDING, cancel_requested=False).update(
        status=JobStatus.RUNNING, started_at=Coalesce(F("started_at"), Value(now)), heartbeat_at=now, error="",
        attempts=F("attempts") + 1, worker=worker[:200], handback_requested=False,
    )
    if not claimed:
        return None
    return BackgroundJob.objects.get(pk=job_id)


HANDBACK_DELAY_SECONDS = 2


def _handed_back_by(job_id: int, worker: str) -> bool:
    """Whether ``worker`` handed this job back (so it is shutting down and must leave the job to others)."""
    handbacks = (BackgroundJob.objects.filter(pk=job_id, status=JobStatus.PENDING).values_list("metadata", flat=True)
                 .first() or {}).get("handbacks") or []
    return bool(worker) and bool(handbacks) and handbacks[-1].get("worker") == worker


def run_job(job_id: int, *, worker: str = "") -> str:
    """Run a job's handler. Idempotent: a finished job is skipped, a live one elsewhere raises JobBusy, a stale
    one (its worker died and the broker delivered its message again) is rescued first."""
    if _handed_back_by(job_id, worker):
        # The worker shutting down received the message it sent for others: send it on again, a little later.
        enqueue(BackgroundJob(pk=job_id), countdown=HANDBACK_DELAY_SECONDS)
        return "LEFT_FOR_ANOTHER_WORKER"
    if BackgroundJob.objects.filter(_is_stale(), pk=job_id).exists():
        rescue_job(job_id, why="its message was delivered again after its worker stopped", requeue=False)
    job = _claim_for_run(job_id, worker)
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
    log.info("job %s (%s) started, attempt %s", job_id, job.type, job.attempts)
    try:
        kind.run(ctx)
    except JobCancelled:
        _finish(job_id, JobStatus.CANCELLED, ctx=ctx)
        log.info("job %s cancelled at a batch boundary", job_id)
        return JobStatus.CANCELLED
    except JobHandedBack:
        _hand_back(ctx)
        log.info("job %s handed back to the queue: its worker is shutting down", job_id)
        return "HANDED_BACK"
    except JobSuperseded:
        log.warning("job %s attempt %s stopped: a newer attempt owns the job", job_id, ctx.attempt)
        return "SUPERSEDED"
    except PullSuperseded:
        _finish(job_id, JobStatus.CANCELLED, ctx=ctx, error=gettext("Stopped: the pull was force-restarted or reset."))
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
    qs = BackgroundJob.objects.filter(pk=job_id)
    if ctx is not None:
        values.update(
            processed=ctx.processed, successful=ctx.successful, failed=ctx.failed, total=ctx.total,
            metadata=ctx.metadata,
        )
        qs = qs.filter(attempts=ctx.attempt)  # a superseded run writes nothing
    qs.update(**values)


def _hold_pull_for_next_attempt(job_id: int) -> None:
    """The pull this job holds stays its own while the job waits for its next attempt: a new token (an old run
    still alive learns at its next checkpoint that it lost the pull) and a fresh heartbeat."""
    PullProgress.objects.filter(job_id=job_id, status=PullStatus.RUNNING).update(
        run_token=uuid.uuid4(), last_pulled_at=timezone.now())


def _hand_back(ctx: JobContext) -> None:
    """Back to PENDING with a new message, to continue on another worker from its checkpoint."""
    now = timezone.now()
    log_entry = {"at": now.isoformat(), "why": "its worker was shutting down", "attempt": ctx.attempt,
                 "worker": ctx.job.worker}
    ctx.metadata["handbacks"] = [*ctx.metadata.get("handbacks", []), log_entry]
    with transaction.atomic(durable=True):
        if BackgroundJob.objects.filter(pk=ctx.job_id, attempts=ctx.attempt, status=JobStatus.RUNNING).update(
            status=JobStatus.PENDING, handback_requested=False, worker="", heartbeat_at=now,
            processed=ctx.processed, successful=ctx.successful, failed=ctx.failed, total=ctx.total,
            metadata=ctx.metadata,
        ):
            _hold_pull_for_next_attempt(ctx.job_id)
            enqueue(ctx.job, countdown=HANDBACK_DELAY_SECONDS)


# --- rescue ---------------------------------------------------------------------------------------
def rescue_job(job_id: int, *, why: str, requeue: bool = True, dead: Q | None = None) -> str:
    """A RUNNING job whose worker died: back to PENDING (and queued again) to resume from its checkpoint, when
    its kind can resume and it has rescues left; otherwise FAILED with the reason. Returns what was done."""
    max_rescues = settings.SHOPBRIDGE["MAX_RESCUES"]
    now = timezone.now()
    with transaction.atomic(durable=True):
        job = BackgroundJob.objects.select_for_update().filter(dead or _is_stale(), pk=job_id).first()
        if job is None:
            return "not stale"
        kind = job_kind(job.type)
        progress_id = job.params.get("progress_id")
        held = PullProgress.objects.filter(job_id=job.pk, status=PullStatus.RUNNING).exists()
        rescues = list(job.metadata.get("rescues", []))
        if progress_id and not held:
            job.status, job.error = JobStatus.CANCELLED, gettext(
                "Stopped: pull %(pull)s is no longer held by this job.") % {"pull": progress_id}
            outcome = "superseded"
        elif kind is None or not kind.resumable:
            job.status = JobStatus.FAILED
            job.error = gettext("No heartbeat for more than %(s)d s: the worker probably died, and %(type)s jobs "
                                "cannot resume safely. Retry it.") % {"s": int(stale_after().total_seconds()),
                                                                      "type": job.type_label}
            outcome = "failed"
        elif len(rescues) >= max_rescues:
            job.status = JobStatus.FAILED
            job.error = gettext("Stopped after %(n)d rescues: its worker died on every attempt (out of memory, or "
                                "a row that crashes it?). Its checkpoint is kept: fix the cause, then retry.") % {
                                    "n": len(rescues)}
            outcome = "failed"
        else:
            rescues.append({"at": now.isoformat(), "why": why, "attempt": job.attempts + 1,
                            "of": max_rescues + 1})
            job.metadata = {**job.metadata, "rescues": rescues}
            job.status, job.worker, job.heartbeat_at = JobStatus.PENDING, "", now
            outcome = "rescued"
        if outcome != "rescued":
            job.completed_at = now
            PullProgress.objects.filter(job_id=job.pk, status=PullStatus.RUNNING).update(
                status=PullStatus.FAILED, error=job.error[:2000])
        else:
            _hold_pull_for_next_attempt(job.pk)
            if requeue:
                enqueue(job)
        job.save(update_fields=["status", "error", "metadata", "worker", "heartbeat_at", "completed_at"])
    log.warning("job %s %s: %s", job_id, outcome, why if outcome == "rescued" else job.error)
    return outcome


def rescue_stale_jobs(*, worker: str | None = None) -> dict[str, int]:
    """Rescue (or fail) every stale RUNNING job; with ``worker``, also the jobs that worker held before it
    restarted (they are orphans, however fresh their heartbeat)."""
    stale = list(BackgroundJob.objects.filter(_is_stale()).values_list("pk", flat=True))
    counts: dict[str, int] = {}
    for job_id in stale:
        outcome = rescue_job(job_id, why="no heartbeat within the stale window: its worker died")
        counts[outcome] = counts.get(outcome, 0) + 1
    if worker:
        orphaned = Q(status=JobStatus.RUNNING, worker=worker)
        for job_id in BackgroundJob.objects.filter(orphaned).values_list("pk", flat=True):
            outcome = rescue_job(job_id, why=f"its worker {worker} restarted", dead=orphaned)
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def request_handback(worker: str) -> int:
    """The worker is shutting down: its running jobs stop at their next batch and go back to the queue."""
    return BackgroundJob.objects.filter(status=JobStatus.RUNNING, worker=worker).update(handback_requested=True)


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
    kind = kind.for_params(job.params) if kind is not None else None
    if kind is not None and kind.start is not None:
        return kind.start(params=dict(job.params), started_by=started_by, user=user, retry_of=job,
                          force_restart=force_restart)
    return launch(create_job(job.type, params=dict(job.params), started_by=started_by, user=user, retry_of=job))


def may_start(user, job_type: str, params: dict | None = None) -> bool:
    """Whether ``user`` holds the permission the job's kind declares for starting it (and so retrying it).
    A kind that dispatches on its params (``JobKind.resolve``) asks the kind those params name."""
    kind = job_kind(job_type)
    if kind is not None and kind.resolve is not None:
        try:
            kind = kind.for_params(params or {})
        except (KeyError, ValueError):
            return False
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
    msg = gettext("No heartbeat for more than %(s)d s: the worker probably died.") % {
        "s": int(stale_after().total_seconds())}
    n = BackgroundJob.objects.filter(pk__in=ids, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, error=msg, completed_at=timezone.now()
    )
    PullProgress.objects.filter(job_id__in=ids, status=PullStatus.RUNNING).update(status=PullStatus.FAILED, error=msg)
    return n
