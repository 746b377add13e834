"""Job types: apps register what runs each type, its label and its typed result (from AppConfig.ready).

``jobs`` knows no type of its own but the self-test; a job of a type nobody registered cannot be created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lifecycle import JobContext
    from .models import BackgroundJob

Handler = Callable[["JobContext"], Any]
Starter = Callable[..., "BackgroundJob"]


@dataclass(frozen=True)
class JobKind:
    job_type: str
    label: str
    run: Handler
    # How to start a fresh job with the same params (retry, force restart); None: same params, enqueued.
    start: Starter | None = None
    # The typed result callers read back (jobs.results.result_of); None: the raw metadata.
    result: type | None = None
    # The permission a user needs to start (and so to retry) a job of this type.
    permission: str | None = None
    # Whether a run whose worker died may be started again to continue (from a checkpoint, or because a re-run
    # is exact). A kind whose re-run could repeat a write that is neither idempotent nor checked says False:
    # a stale job of that kind is failed instead, for staff to look at.
    resumable: bool = True
    # A kind that stands for several (one "retry failed syncs" type over many apps' syncs): the concrete kind
    # (its run, start, result and permission) for a job's params. None: this kind is concrete.
    resolve: Callable[[dict], JobKind] | None = None

    def for_params(self, params: dict | None) -> JobKind:
        """The concrete kind of a job with these params (itself unless it dispatches)."""
        return self.resolve(params or {}) if self.resolve is not None else self


_KINDS: dict[str, JobKind] = {}


def register_job_type(job_type: str, *, run: Handler, label: str | None = None, start: Starter | None = None,
                      result: type | None = None, permission: str | None = None, resumable: bool = True,
                      resolve: Callable[[dict], JobKind] | None = None) -> JobKind:
    # ``label`` is shown to staff: pass it lazily translated (gettext_lazy), it is read in each request's language.
    kind = JobKind(job_type, label or job_type.replace("_", " ").capitalize(), run, start, result, permission,
                   resumable, resolve)
    _KINDS[job_type] = kind
    return kind


def unregister_job_type(job_type: str) -> None:
    _KINDS.pop(job_type, None)


def job_kind(job_type: str) -> JobKind | None:
    return _KINDS.get(job_type)


def is_registered(job_type: str) -> bool:
    return job_type in _KINDS


def job_type_label(job_type: str) -> str:
    kind = _KINDS.get(job_type)
    return str(kind.label) if kind else job_type


def job_type_choices() -> list[tuple[str, str]]:
    return sorted(((t, str(k.label)) for t, k in _KINDS.items()), key=lambda c: c[1])
