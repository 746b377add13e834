"""Command targets: what ``manage.py automatch KIND`` and ``manage.py sync_shopify KIND`` run for each kind.

Django command names are global, so those commands live here and dispatch through this registry; each app
registers its kinds (with the extra command-line arguments they take) from its AppConfig.ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .models import BackgroundJob, StartedBy


@dataclass(frozen=True)
class Argument:
    flags: tuple[str, ...]
    options: dict = field(default_factory=dict)  # argparse keyword arguments


@dataclass
class Started:
    job: BackgroundJob
    already_ran: bool = False  # the job ran in the call (e.g. a dry run); just report it
    queued_message: str = ""  # what to print when the job was only queued


@dataclass(frozen=True)
class Operation:
    command: str  # "automatch", "sync_shopify"
    kind: str  # "customers", "products", …
    start: Callable[..., Started]  # start(options, wait=bool) → Started; raises ValueError for bad options
    report: Callable[[BackgroundJob, dict], list[str]]  # lines printed once the job completed
    arguments: Sequence[Argument] = ()


_OPERATIONS: dict[tuple[str, str], Operation] = {}


def register_operation(operation: Operation) -> None:
    _OPERATIONS[(operation.command, operation.kind)] = operation


def operations(command: str) -> list[Operation]:
    return [op for (cmd, _), op in sorted(_OPERATIONS.items()) if cmd == command]


def get_operation(command: str, kind: str) -> Operation:
    op = _OPERATIONS.get((command, kind))
    if op is None:
        known = ", ".join(o.kind for o in operations(command)) or "none"
        raise ValueError(f"`{command}` has no kind {kind!r}; known: {known}")
    return op


def dry_runnable(start: Callable[..., BackgroundJob], what: str) -> Callable[..., Started]:
    """The ``start`` of a matching command: queued unless --wait; a --dry-run runs here and is reported.
    ``start(dry_run=…, started_by=…, run_now=…)`` is the app's own start function."""

    def begin(o: dict, *, wait: bool) -> Started:
        if not wait and not o.get("dry_run"):
            job = start(started_by=StartedBy.COMMAND)
            return Started(job, queued_message=f"{what} queued as job #{job.pk}.")
        return Started(start(dry_run=bool(o.get("dry_run")), started_by=StartedBy.COMMAND, run_now=True),
                       already_ran=True)

    return begin


# --- "retry failed syncs": one job type over every app's syncs ---------------------------------------------
RETRY_FAILED_SYNC = "RETRY_FAILED_SYNC"
DEFAULT_RETRY_TARGET = "customers"  # jobs queued before targets existed carry no "target" in their params


@dataclass(frozen=True)
class RetryTarget:
    """What "retry failed syncs" does for one target (``params["target"]``): an app's sync run over its failed
    records, with that app's permission, typed result and start (for a retry of the retry job)."""

    name: str  # "customers", "products"
    run: Callable  # run(ctx): the app's sync job handler (reads its own params)
    permission: str
    label: str = ""
    result: type | None = None
    start: Callable[..., BackgroundJob] | None = None


_RETRY_TARGETS: dict[str, RetryTarget] = {}


def retry_targets() -> list[RetryTarget]:
    return [t for _, t in sorted(_RETRY_TARGETS.items())]


def retry_target(params: dict) -> RetryTarget:
    name = (params or {}).get("target") or DEFAULT_RETRY_TARGET
    target = _RETRY_TARGETS.get(name)
    if target is None:
        raise KeyError(f"no retry target {name!r}; known: {', '.join(sorted(_RETRY_TARGETS)) or 'none'}")
    return target


def register_retry_target(target: RetryTarget) -> None:
    """Apps add their target from ready(); the first one registers the RETRY_FAILED_SYNC job type, which runs,
    starts, reports and checks permissions as the target named in the job's params says."""
    from .registry import JobKind, is_registered, register_job_type

    _RETRY_TARGETS[target.name] = target

    def resolve(params: dict) -> JobKind:
        t = retry_target(params)
        return JobKind(RETRY_FAILED_SYNC, t.label or "Retry failed syncs", t.run, t.start, t.result, t.permission)

    if not is_registered(RETRY_FAILED_SYNC):
        register_job_type(RETRY_FAILED_SYNC, label="Retry failed syncs",
                          run=lambda ctx: retry_target(ctx.params).run(ctx), resolve=resolve)
