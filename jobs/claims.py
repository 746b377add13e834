"""Pull claims: one PullProgress row per progress id says who holds the pull, its heartbeat and where to resume.

- same id held by a live run (heartbeat within the stale window) → PullConflict, unless force restart;
- more than MAX_CONCURRENT_PULLS live → PullCapReached;
- a run that crashed or went stale left a checkpoint → the next run resumes from it;
- a completed run or a force restart starts fresh.
Every transition is a conditional UPDATE; the holder is named by ``run_token`` and a superseded run learns it
at its next checkpoint (PullSuperseded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from .errors import JobCancelled, JobHandedBack, JobSuperseded, PullCapReached, PullConflict, PullSuperseded
from .lifecycle import create_job
from .locks import LockKey, advisory_xact_lock
from .models import BackgroundJob, PullProgress, PullStatus, StartedBy, stale_after

if TYPE_CHECKING:
    from .lifecycle import JobContext

log = logging.getLogger(__name__)


# --- ids ------------------------------------------------------------------------------------------
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


# --- claiming -------------------------------------------------------------------------------------
@dataclass
class PullClaim:
    progress: PullProgress
    job: BackgroundJob
    resumed: bool  # True when the run continues from a checkpoint left by a crashed/stale run


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
    """Atomically claim a progress id and create the pull's job, or raise PullRefused."""
    progress_id = progress_id or make_progress_id(system, kind, filters)
    cap = settings.SHOPBRIDGE["MAX_CONCURRENT_PULLS"]
    now = timezone.now()
    cutoff = now - stale_after()
    with transaction.atomic(durable=True):
        # The per-id claim below is a conditional UPDATE, race-free on its own; the cap spans rows.
        advisory_xact_lock(LockKey.PULL_CLAIMS)
        others = running_pulls().exclude(progress_id=progress_id)
        if others.count() >= cap:
            names = ", ".join(others.values_list("progress_id", flat=True)[:cap])
            raise PullCapReached(
                gettext("%(cap)d pulls are already running (%(names)s); the limit is %(cap)d. "
                        "Wait for one to finish or cancel one.") % {"cap": cap, "names": names}
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
    from .display import local_datetime

    job = gettext(" (job #%(id)s)") % {"id": holder.job_id} if holder.job_id else ""
    return gettext(
        "Pull %(pull)s is already running%(job)s since %(started)s, last heartbeat %(age)d s ago. "
        "Wait for it to finish, or force a restart."
    ) % {"pull": holder.progress_id, "job": job, "started": local_datetime(holder.started_at),
         "age": int(holder.heartbeat_age_seconds)}


# --- while running --------------------------------------------------------------------------------
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
    except (PullSuperseded, JobHandedBack, JobSuperseded):
        raise  # the pull stays held: by the next attempt, or by whoever superseded it
    except JobCancelled:
        finish_pull(progress_id, token, PullStatus.CANCELLED, error=gettext("Cancelled by staff."))
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
