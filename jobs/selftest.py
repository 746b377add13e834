"""A self-test job: counts through N items in batches. Lets an operator (and the tests) check that
worker, broker, database and dashboard work together, before any upstream is configured."""

import time

from .lifecycle import JobContext, create_job, launch
from .registry import register_job_type

SELFTEST = "DEMO"


def run_selftest(ctx: JobContext) -> None:
    items = int(ctx.params.get("items", 100))
    batch = max(int(ctx.params.get("batch", 10)), 1)
    delay = float(ctx.params.get("delay", 0.1))
    done = ctx.processed  # a re-delivered job continues where it was
    ctx.progress(total=items)
    while done < items:
        time.sleep(delay)
        done = min(done + batch, items)
        ctx.progress(processed=done, successful=done, metadata={"batches": -(-done // batch)})


def start_selftest(*, params=None, started_by="system", user=None, retry_of=None, force_restart=False):
    return launch(create_job(SELFTEST, params=params or {}, started_by=started_by, user=user, retry_of=retry_of))


def register() -> None:
    register_job_type(SELFTEST, label="Demo / self-test", run=run_selftest, start=start_selftest)
