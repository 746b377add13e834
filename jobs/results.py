"""Typed job results: each job kind declares a dataclass (``register_job_type(result=…)``); handlers store it
in the job's metadata with ``store_result`` and callers (admin, commands, views) read it back with
``result_of(job)`` instead of picking raw metadata keys."""

from __future__ import annotations

import dataclasses
from typing import Any

from .models import BackgroundJob
from .registry import job_kind


def store_result(ctx, result: Any) -> None:
    """Save a result dataclass into the job's metadata (its fields at the top level)."""
    ctx.set_metadata(**dataclasses.asdict(result))


def result_of(job: BackgroundJob) -> Any:
    """The job's typed result (missing fields take their defaults); the raw metadata for a kind without one."""
    kind = job_kind(job.type)
    if kind is not None and kind.resolve is not None:
        try:
            kind = kind.for_params(job.params)
        except (KeyError, ValueError):
            return dict(job.metadata)
    if kind is None or kind.result is None:
        return dict(job.metadata)
    names = {f.name for f in dataclasses.fields(kind.result)}
    return kind.result(**{k: v for k, v in (job.metadata or {}).items() if k in names})
