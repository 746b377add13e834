"""What can go wrong with a job or a pull, as types. Callers decide by type; none of these knows how an HTTP
response or a command's output looks (jobs.serializers and the callers shape that)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import PullProgress


class JobCancelled(Exception):  # noqa: N818 - a signal, not a failure
    """Raised inside a handler at a batch boundary when staff cancelled the job."""


class PullSuperseded(Exception):  # noqa: N818
    """The pull was force-restarted, reset or taken over: this worker must stop."""


class JobBusy(Exception):  # noqa: N818
    """The job is RUNNING with a fresh heartbeat elsewhere: this delivery of it has nothing to do."""


class JobHandedBack(Exception):  # noqa: N818 - a signal, not a failure
    """Raised at a batch boundary when the job's worker is shutting down: the job goes back to the queue."""


class JobSuperseded(Exception):  # noqa: N818
    """Another run (a rescue) owns the job now: this run must stop without writing anything more."""


class PullInputError(ValueError):
    """The pull request itself is wrong (unknown system/kind/mode, bad filter): shown to staff as is."""


class PullRefused(Exception):
    """A pull could not start. The message is shown to staff; ``holder`` is the pull in the way."""

    def __init__(self, message: str, holder: PullProgress | None = None):
        super().__init__(message)
        self.holder = holder


class PullConflict(PullRefused):
    """The same progress id is held by a live run."""


class PullCapReached(PullRefused):
    """As many pulls as allowed are running already."""
