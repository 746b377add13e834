"""The jobs app's public API in one import (``from jobs import services as jobs``). The pieces live in:

- ``lifecycle``: create, launch (run here / queue / leave for the caller), JobContext, run, cancel, retry;
- ``claims``: pull claims, checkpoints, resets; ``locks``: every advisory lock by name;
- ``registry``: job types; ``results``: typed results; ``serializers``: JSON shapes; ``errors``: what can fail;
- ``pulls`` (the pull engine) and ``pull_specs`` (the registered pulls and their one start path).
"""

from .claims import (
    PullClaim,
    canonical_json,
    claim_pull,
    finish_pull,
    holding_pull,
    make_progress_id,
    pull_checkpoint,
    reset_pulls,
    running_pulls,
)
from .errors import (
    JobBusy,
    JobCancelled,
    JobHandedBack,
    JobSuperseded,
    PullCapReached,
    PullConflict,
    PullInputError,
    PullRefused,
    PullSuperseded,
)
from .lifecycle import (
    JobContext,
    cancel_job,
    create_job,
    describe_error,
    enqueue,
    fail_stale_jobs,
    launch,
    may_start,
    request_handback,
    rescue_job,
    rescue_stale_jobs,
    retry_job,
    run_job,
)
from .registry import register_job_type, unregister_job_type
from .results import result_of, store_result
from .serializers import job_as_dict, pull_as_dict, refusal_as_dict

__all__ = [
    "JobBusy", "JobCancelled", "JobContext", "JobHandedBack", "JobSuperseded", "PullCapReached", "PullClaim",
    "PullConflict", "PullInputError", "PullRefused", "PullSuperseded", "cancel_job", "canonical_json", "claim_pull",
    "create_job", "describe_error", "enqueue", "fail_stale_jobs", "finish_pull", "holding_pull", "launch",
    "make_progress_id", "may_start", "pull_checkpoint", "request_handback", "rescue_job", "rescue_stale_jobs",
    "reset_pulls", "retry_job", "run_job", "running_pulls", "register_job_type", "unregister_job_type",
    "result_of", "store_result", "job_as_dict", "pull_as_dict", "refusal_as_dict",
]
