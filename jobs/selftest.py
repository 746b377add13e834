"""A self-test job: counts through N items in batches. Lets an operator (and the tests) check that
worker, broker, database and dashboard work together, before any upstream is configured. With
``crash_after`` (batches) it kills its own process, as an out-of-memory kill would: the way to see a rescue."""

import os
import signal
import time

from django.utils.translation import gettext_lazy as _

from .lifecycle import JobContext, create_job, launch
from .registry import register_job_type

SELFTEST = "DEMO"


def run_selftest(ctx: JobContext) -> None:
    items = int(ctx.params.get("items", 100))
    batch = max(int(ctx.params.get("batch", 10)), 1)
    delay = float(ctx.params.get("delay", 0.1))
    crash_after = ctx.params.get("crash_after")
    done = ctx.processed  # a rescued or re-delivered job continues where it was
    ctx.progress(total=items)
    batches_this_run = 0
    while done < items:
        time.sleep(delay)
        done = min(done + batch, items)
        ctx.progress(processed=done, successful=done, metadata={"batches": -(-done // batch)})
        batches_this_run += 1
        if crash_after is not None and batches_this_run >= int(crash_after):
            os.kill(os.getpid(), signal.SIGKILL)


def start_selftest(*, params=None, started_by="system", user=None, retry_of=None, force_restart=False):
    return launch(create_job(SELFTEST, params=params or {}, started_by=started_by, user=user, retry_of=retry_of))


def register() -> None:
    register_job_type(SELFTEST, label=_("Demo / self-test"), run=run_selftest, start=start_selftest)
