"""Registered pulls: one ``PullSpec`` per (system, kind), and the one start path every door uses (admin page,
JSON API, ``manage.py pull``, beat, retry and force restart).

A spec declares its modes (which run synchronously, which are incremental or capped), its filters (how they are
validated, canonicalised into the progress id, shown in the admin form and offered on the command line), the
job type, the source factory and the upsert. Claims, 409s, force restart, resume, incremental marks, capped
continuation and progress are the framework's; a new source writes none of them::

    register_pull_spec(PullSpec(system="nhanh", kind="products", job_type="PULL_NHANH_PRODUCTS",
                                label="Pull Nhanh products", modes=[PullMode("all", "All products")],
                                source=lambda req: NhanhProductSource(req.client, req.filters),
                                upsert=upsert_nhanh_products))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .claims import claim_pull, make_progress_id
from .errors import PullInputError
from .lifecycle import JobContext, launch
from .models import BackgroundJob, PullMark, StartedBy
from .pulls import BatchResult, PullResult, PullSource, run_pull
from .registry import register_job_type

log = logging.getLogger(__name__)

RUN_PULL = "jobs.run_pull"


# --- declarations ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Incremental:
    """New/updated since the last successful run of this mode, re-reading ``overlap`` (clocks differ, rows land
    late); the first run reads ``first_window`` back. The mark moves only when a run completes."""

    first_window: timedelta = timedelta(hours=24)
    overlap: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Capped:
    """The next ``limit`` rows each run, continuing after where the previous run stopped (wrapping at the end).
    ``limit`` is a number or the name of a SHOPBRIDGE setting."""

    limit: int | str = "PULL_LIMIT_SYNC"

    def size(self) -> int:
        return self.limit if isinstance(self.limit, int) else int(settings.SHOPBRIDGE[self.limit])


@dataclass(frozen=True)
class PullMode:
    name: str
    label: str  # the admin form's choice text
    synchronous: bool = False  # runs in the caller (the admin page waits for it)
    incremental: Incremental | None = None
    capped: Capped | None = None
    filters: tuple[str, ...] = ()  # the filters this mode takes (others are dropped)
    requires_filter: str = ""  # message when none of ``filters`` is given ("" = filters optional)

    @property
    def has_mark(self) -> bool:
        return self.incremental is not None or self.capped is not None


@dataclass(frozen=True)
class FilterField:
    """One filter: its key in the filters dict (and so in the progress id), how a raw value is checked and
    canonicalised, its admin form field and its command-line flag."""

    name: str
    parse: Callable[[Any], Any]  # raw value → canonical value (None: not given); raises PullInputError
    form_field: Callable[[], Any] | None = None  # a django.forms.Field factory
    form_name: str = ""  # the form field's name when it differs from ``name``
    cli_flag: str = ""  # e.g. "--type"
    help: str = ""
    # False for a choice of how to pull (e.g. Shopify's bulk or paged) rather than what: it does not name the
    # claim, so the same rows pulled either way are one pull.
    identity: bool = True

    @property
    def field_name(self) -> str:
        return self.form_name or self.name


@dataclass(frozen=True)
class SourceRequest:
    """What a spec's source factory gets for one run."""

    mode: str
    filters: dict
    client: Any  # what the spec's ``client`` factory built for this run, or None
    window: tuple[datetime, datetime] | None = None  # an incremental run's [since, until]
    start: Any = None  # where a fresh capped run begins (a resumed run gets its checkpoint instead)


@dataclass
class PullSpec:
    system: str
    kind: str
    job_type: str
    label: str  # "Pull Nhanh customers"
    modes: Sequence[PullMode]
    source: Callable[[SourceRequest], PullSource]
    upsert: Callable[[list[dict]], BatchResult]
    filters: Sequence[FilterField] = ()
    validate: Callable[[str, dict], None] | None = None  # cross-field checks; raises PullInputError
    system_label: str = ""
    client: Callable[[], Any] | None = None  # builds the upstream client for one run (closed after it)
    after_run: Callable[[JobContext, Any], None] | None = None  # e.g. record the client's API usage
    demo_mode: str | None = "all"  # what ``manage.py demo --start-jobs`` queues; None: nothing
    default_mode: str = "all"
    permission: str = RUN_PULL
    # How (mode, canonical filters) name the claim, when the default does not fit (e.g. one id per mode and page).
    progress_id_of: Callable[[PullMode, dict], str] | None = None
    _modes: dict[str, PullMode] = field(init=False, repr=False)

    def __post_init__(self):
        self._modes = {m.name: m for m in self.modes}
        self.system_label = self.system_label or self.system.capitalize()

    @property
    def key(self) -> tuple[str, str]:
        return self.system, self.kind

    def mode(self, name: str) -> PullMode:
        try:
            return self._modes[name]
        except KeyError:
            raise PullInputError(f"{self.system_label} {self.kind} pulls are {', '.join(self._modes)}, "
                                 f"not {name!r}") from None

    def filter_field(self, name: str) -> FilterField | None:
        return next((f for f in self.filters if f.name == name), None)

    def mode_for(self, filters: dict) -> str:
        """The mode a request without one means: the first that needs a filter and takes the ones given."""
        identity = {f.name for f in self.filters if f.identity}
        given = {k for k, v in filters.items() if v not in (None, "") and k in identity}
        if given:
            for m in self.modes:
                if m.requires_filter and given <= set(m.filters):
                    return m.name
        return self.default_mode

    def canonical_filters(self, mode: PullMode, raw: dict | None) -> dict:
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in self.filters}
        if unknown:
            raise PullInputError(f"unknown filter(s) {', '.join(sorted(map(str, unknown)))} for {self.system_label} "
                                 f"{self.kind}; known: {', '.join(f.name for f in self.filters) or 'none'}")
        filters = {}
        for f in self.filters:
            if f.name in mode.filters:
                value = f.parse(raw.get(f.name))
                if value not in (None, "", [], {}):
                    filters[f.name] = value
        if mode.requires_filter and not any(self.filter_field(k).identity for k in filters):
            raise PullInputError(mode.requires_filter)
        if self.validate:
            self.validate(mode.name, filters)
        return filters

    def progress_id(self, mode: PullMode, filters: dict) -> str:
        if self.progress_id_of is not None:
            return self.progress_id_of(mode, filters)
        if mode.has_mark:  # one id per mode: its mark (and claim) is shared by every run of the mode
            return f"{self.system}_{self.kind}_{mode.name}"
        identity = {f.name for f in self.filters if f.identity}
        return make_progress_id(self.system, self.kind, {k: v for k, v in filters.items() if k in identity})


_SPECS: dict[tuple[str, str], PullSpec] = {}


def register_pull_spec(spec: PullSpec) -> PullSpec:
    """Register a pull (from an AppConfig.ready): its job type runs through the framework's handler."""
    _SPECS[spec.key] = spec
    register_job_type(spec.job_type, label=spec.label, run=run_spec_pull, start=restart_pull, result=PullResult,
                      permission=spec.permission)
    return spec


def unregister_pull_spec(system: str, kind: str) -> None:
    from .registry import unregister_job_type

    spec = _SPECS.pop((system, kind), None)
    if spec is not None:
        unregister_job_type(spec.job_type)


def pull_specs() -> list[PullSpec]:
    return sorted(_SPECS.values(), key=lambda s: s.key)


def get_spec(system: str, kind: str) -> PullSpec:
    spec = _SPECS.get((str(system), str(kind)))
    if spec is None:
        known = ", ".join(f"{s} {k}" for s, k in sorted(_SPECS)) or "none"
        raise PullInputError(f"no {kind!r} pulls from {system!r}; known pulls: {known}")
    return spec


# --- starting ---------------------------------------------------------------------------------------------
@dataclass
class PullStarted:
    job: BackgroundJob
    progress_id: str
    resumed: bool
    synchronous: bool


def start_pull(
    system: str,
    kind: str,
    mode: str | None = None,
    *,
    filters: dict | None = None,
    force_restart: bool = False,
    started_by: str = StartedBy.SYSTEM,
    user=None,
    retry_of: BackgroundJob | None = None,
    start_now: bool = True,
) -> PullStarted:
    """Claim the pull and start it: synchronous modes run here and return finished, the others are queued
    (``start_now=False``: claimed but left for the caller to run, e.g. ``pull --wait``).
    Raises PullInputError for a bad request and PullRefused when the pull may not start."""
    spec = get_spec(system, kind)
    pull_mode = spec.mode(mode or spec.mode_for(filters or {}))
    canonical = spec.canonical_filters(pull_mode, filters)
    progress_id = spec.progress_id(pull_mode, canonical)
    claim = claim_pull(
        system=spec.system, kind=spec.kind, filters=canonical, job_type=spec.job_type,
        params={"system": spec.system, "kind": spec.kind, "mode": pull_mode.name, "filters": canonical},
        started_by=started_by, user=user, force_restart=force_restart, retry_of=retry_of, progress_id=progress_id,
    )
    synchronous = pull_mode.synchronous and start_now
    launch(claim.job, run_now=synchronous, start_now=start_now)
    return PullStarted(job=claim.job, progress_id=progress_id, resumed=claim.resumed, synchronous=synchronous)


def restart_pull(*, params, started_by, user, retry_of=None, force_restart=False) -> BackgroundJob:
    """Retry and force restart (the job registry's ``start``): the same pull again, through its claim."""
    return start_pull(params["system"], params["kind"], params["mode"], filters=params.get("filters"),
                      force_restart=force_restart, started_by=started_by, user=user, retry_of=retry_of).job


# --- running (the handler of every registered pull's job type) -------------------------------------------
def _read_mark(key: str) -> dict:
    mark = PullMark.objects.filter(key=key).first()
    return mark.value if mark else {}


def _save_mark(key: str, value: dict) -> None:
    PullMark.objects.update_or_create(key=key, defaults={"value": value})


def run_spec_pull(ctx: JobContext) -> None:
    spec = get_spec(ctx.params["system"], ctx.params["kind"])
    mode = spec.mode(ctx.params["mode"])
    filters = dict(ctx.params.get("filters") or {})
    mark_key = spec.progress_id(mode, filters)
    window, start, limit, new_mark = None, None, None, None
    if mode.incremental:
        previous = _read_mark(mark_key).get("updated_to")
        now = timezone.now()
        since = (datetime.fromtimestamp(previous, tz=UTC) - mode.incremental.overlap if previous
                 else now - mode.incremental.first_window)
        window = (since, now)
        until = int(now.timestamp())
        new_mark = lambda _cursor: {"updated_to": until}  # noqa: E731
        ctx.set_metadata(window={"from": since.isoformat(), "to": now.isoformat()})
    elif mode.capped:
        limit = mode.capped.size()
        start = _read_mark(mark_key).get("cursor")
        new_mark = lambda cursor: {"cursor": cursor}  # noqa: E731
        ctx.set_metadata(limit=limit, continues_from=start)

    def on_complete(_totals, resume_cursor):
        if new_mark is not None:
            _save_mark(mark_key, new_mark(resume_cursor))

    client = spec.client() if spec.client is not None else None
    try:
        source = spec.source(SourceRequest(mode=mode.name, filters=filters, client=client, window=window,
                                           start=start))
        run_pull(ctx, source=source, upsert=spec.upsert, limit=limit, on_complete=on_complete)
    finally:
        if client is not None:
            client.close()
    if spec.after_run is not None:
        spec.after_run(ctx, client)


# --- filter parsers specs share -------------------------------------------------------------------------------
def parse_date(what: str) -> Callable[[Any], str | None]:
    def parse(value) -> str | None:
        if value in (None, ""):
            return None
        if isinstance(value, date):
            return value.isoformat()
        try:
            return date.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise PullInputError(f"{what} must be a date like 2024-01-31, not {value!r}") from None

    return parse


def parse_text(what: str, max_length: int = 500) -> Callable[[Any], str | None]:
    def parse(value) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PullInputError(f"{what} must be text, not {type(value).__name__}")
        value = value.strip()
        if len(value) > max_length:
            raise PullInputError(f"{what} is longer than {max_length} characters")
        return value or None

    return parse
