"""Job tracking and pull claims against the real database (run with DATABASE_URL=postgres… in CI).

Threads stand in for workers: each has its own database connection, so "visible from another
connection" and "two concurrent claims" are really tested, not simulated."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from customers.job_types import CustomerJobType as JobType
from jobs import services
from jobs.models import BackgroundJob, JobStatus, PullProgress, PullStatus, StartedBy

pytestmark = pytest.mark.django_db(transaction=True)

TEST_TYPE = "TEST_STEPPED"
TEST_PULL = "TEST_PULL"


@pytest.fixture(autouse=True)
def test_types_registered():
    """Jobs can only be created for registered types: these tests' own types (tests re-register with handlers)."""
    for job_type in (TEST_TYPE, TEST_PULL):
        services.register_job_type(job_type, run=lambda ctx: None)
    yield
    for job_type in (TEST_TYPE, TEST_PULL):
        services.unregister_job_type(job_type)


def in_thread(fn, *args, **kwargs):
    """Run fn in a new thread (its own DB connection); returns (thread, result-holder)."""
    box = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc
        finally:
            connections.close_all()

    t = threading.Thread(target=target)
    t.start()
    return t, box


@pytest.fixture
def stepped_handler():
    """A handler that processes one batch of 10 each time the test releases it."""
    steps = threading.Semaphore(0)
    reached = threading.Semaphore(0)

    def run(ctx):
        ctx.progress(total=50)
        for done in range(10, 51, 10):
            reached.release()
            assert steps.acquire(timeout=20), "test never released the next batch"
            ctx.progress(processed=done, successful=done)

    services.register_job_type(TEST_TYPE, run=run)
    yield steps, reached
    services.unregister_job_type(TEST_TYPE)


def reload(job):
    return BackgroundJob.objects.get(pk=job.pk)


def test_running_job_is_visible_from_another_connection_and_moves_batch_by_batch(stepped_handler):
    steps, reached = stepped_handler
    job = services.create_job(TEST_TYPE, started_by=StartedBy.COMMAND)
    t, box = in_thread(services.run_job, job.pk)
    assert reached.acquire(timeout=10)
    seen = reload(job)  # this test's connection, not the worker's
    assert seen.status == JobStatus.RUNNING and seen.total == 50 and seen.processed == 0
    for expected in (10, 20, 30, 40):
        steps.release()
        assert reached.acquire(timeout=10)
        assert reload(job).processed == expected
    steps.release()
    t.join(10)
    assert box.get("result") == JobStatus.COMPLETED, box
    done = reload(job)
    assert (done.status, done.processed, done.successful, done.failed) == (JobStatus.COMPLETED, 50, 50, 0)
    assert done.completed_at and done.heartbeat_at and done.speed  # derived: no copy in metadata


def test_cancel_stops_a_running_job_at_a_batch_boundary_with_counts_intact(stepped_handler):
    steps, reached = stepped_handler
    job = services.create_job(TEST_TYPE)
    t, box = in_thread(services.run_job, job.pk)
    assert reached.acquire(timeout=10)
    steps.release()
    assert reached.acquire(timeout=10)  # batch 1 (10 items) is written
    assert services.cancel_job(reload(job)) is True
    steps.release()  # the worker writes batch 2, then sees the cancel at the boundary
    t.join(10)
    assert box.get("result") == JobStatus.CANCELLED, box
    job = reload(job)
    assert job.status == JobStatus.CANCELLED
    assert job.processed == 20 and job.successful == 20  # counts of the batches done are kept


def test_cancel_pending_job_is_immediate_and_never_runs():
    services.register_job_type(TEST_TYPE, run=lambda ctx: pytest.fail("cancelled job ran"))
    try:
        job = services.create_job(TEST_TYPE)
        assert services.cancel_job(job)
        assert services.run_job(job.pk) == JobStatus.CANCELLED
    finally:
        services.unregister_job_type(TEST_TYPE)


def test_failing_handler_fails_the_job_with_a_clear_error():
    def boom(ctx):
        ctx.progress(processed=3)
        raise ValueError("upstream sent garbage")

    services.register_job_type(TEST_TYPE, run=boom)
    try:
        job = services.create_job(TEST_TYPE)
        assert services.run_job(job.pk) == JobStatus.FAILED
        job = reload(job)
        assert job.error.startswith("ValueError: upstream sent garbage") and job.processed == 3
    finally:
        services.unregister_job_type(TEST_TYPE)


def test_finished_job_is_not_run_twice():
    calls = []
    services.register_job_type(TEST_TYPE, run=lambda ctx: calls.append(1))
    try:
        job = services.create_job(TEST_TYPE)
        assert services.run_job(job.pk) == JobStatus.COMPLETED
        assert services.run_job(job.pk) == JobStatus.COMPLETED  # redelivered message: skipped
        assert calls == [1]
    finally:
        services.unregister_job_type(TEST_TYPE)


def test_live_running_job_refuses_a_second_worker_but_a_stale_one_is_taken_over():
    services.register_job_type(TEST_TYPE, run=lambda ctx: None)
    try:
        job = services.create_job(TEST_TYPE)
        BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
        with pytest.raises(services.JobBusy):
            services.run_job(job.pk)
        BackgroundJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
        assert services.run_job(job.pk) == JobStatus.COMPLETED
    finally:
        services.unregister_job_type(TEST_TYPE)


def test_fail_stale_jobs_marks_only_jobs_without_heartbeat():
    fresh = services.create_job(TEST_TYPE)
    stale = services.create_job(TEST_TYPE)
    now = timezone.now()
    BackgroundJob.objects.filter(pk=fresh.pk).update(status=JobStatus.RUNNING, heartbeat_at=now)
    BackgroundJob.objects.filter(pk=stale.pk).update(status=JobStatus.RUNNING, heartbeat_at=now - timedelta(minutes=3))
    assert reload(stale).is_stale and not reload(fresh).is_stale
    assert services.fail_stale_jobs() == 1
    assert reload(stale).status == JobStatus.FAILED and "heartbeat" in reload(stale).error
    assert reload(fresh).status == JobStatus.RUNNING


# --- pull claims ------------------------------------------------------------------------------------
def claim(filters=None, *, system="nhanh", force=False, **kw):
    return services.claim_pull(system=system, kind="customers", filters=filters, job_type=JobType.PULL_NHANH_CUSTOMERS,
                               params={"filters": filters}, force_restart=force, **kw)


def test_progress_ids_hash_the_whole_canonical_filter():
    a = services.make_progress_id("nhanh", "customers", {"lastBoughtDateFrom": "2024-01-01", "type": 1})
    b = services.make_progress_id("nhanh", "customers", {"type": 1, "lastBoughtDateFrom": "2024-01-01"})
    c = services.make_progress_id("nhanh", "customers", {"lastBoughtDateFrom": "2024-06-01", "type": 1})
    # The original tool kept only 20 base64 chars, so filters sharing a first key collided.
    d = services.make_progress_id("nhanh", "customers", {"lastBoughtDateFrom": "2024-01-01", "type": 2})
    assert a == b and len({a, c, d}) == 3
    assert a.startswith("nhanh_customers_")
    assert services.make_progress_id("nhanh", "customers", {}) == "nhanh_customers"
    assert services.make_progress_id("nhanh", "customers", {"type": None}) == "nhanh_customers"


def race(n, fn):
    """Start n calls of fn at the same instant from n threads (n connections)."""
    barrier = threading.Barrier(n)
    results = []

    def go():
        barrier.wait()
        try:
            results.append(fn())
        except services.PullRefused as exc:
            results.append(exc)

    threads = [in_thread(go)[0] for _ in range(n)]
    for t in threads:
        t.join(30)
    return results


def test_two_concurrent_claims_of_the_same_id_give_exactly_one_winner():
    for _ in range(3):  # repeat: a lucky interleaving must not hide a race
        PullProgress.objects.all().delete()
        results = race(2, lambda: claim({"type": 1}))
        winners = [r for r in results if isinstance(r, services.PullClaim)]
        losers = [r for r in results if isinstance(r, services.PullConflict)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert "already running" in str(losers[0]) and losers[0].holder.job_id == winners[0].job.pk
        # The loser's job was rolled back with its claim: only the winner's job exists.
        assert BackgroundJob.objects.filter(metadata__progress_id=winners[0].progress.progress_id).count() == 1
        BackgroundJob.objects.all().delete()


def test_different_ids_claim_in_parallel():
    results = race(3, lambda: None)  # warm the barrier helper
    assert results == [None, None, None]
    filters = [{"type": 1}, {"type": 2}, None]
    barrier = threading.Barrier(3)
    out = []

    def go(f):
        barrier.wait()
        out.append(claim(f))

    threads = [in_thread(go, f)[0] for f in filters]
    for t in threads:
        t.join(30)
    assert len(out) == 3 and len({c.progress.progress_id for c in out}) == 3


def test_same_id_refused_while_running_then_free_after_completion():
    first = claim({"type": 1})
    with pytest.raises(services.PullConflict) as exc:
        claim({"type": 1})
    assert first.progress.progress_id in str(exc.value) and f"job #{first.job.pk}" in str(exc.value)
    assert services.refusal_as_dict(exc.value)["running"]["job_id"] == first.job.pk
    services.finish_pull(first.progress.progress_id, first.progress.run_token, PullStatus.COMPLETED)
    second = claim({"type": 1})
    assert second.job.pk != first.job.pk and not second.resumed


def test_stale_claim_is_taken_over_and_resumes_from_its_checkpoint():
    first = claim({"type": 3})
    services.pull_checkpoint(first.progress.progress_id, first.progress.run_token, checkpoint={"next": {"id": 42}},
                             items_done=300)
    # Heartbeat 90 s old: still running (Rule 4 says 2 minutes), refused.
    PullProgress.objects.update(last_pulled_at=timezone.now() - timedelta(seconds=90))
    with pytest.raises(services.PullConflict):
        claim({"type": 3})
    PullProgress.objects.update(last_pulled_at=timezone.now() - timedelta(seconds=121))
    assert PullProgress.objects.get().is_stale
    second = claim({"type": 3})
    assert second.resumed and second.progress.checkpoint == {"next": {"id": 42}}
    assert second.progress.items_done == 300
    # The crashed run's token no longer holds the pull.
    with pytest.raises(services.PullSuperseded):
        services.pull_checkpoint(first.progress.progress_id, first.progress.run_token, checkpoint={"x": 1})


def test_force_restart_starts_fresh_and_the_old_worker_stops_at_its_next_batch():
    batches = threading.Semaphore(0)
    proceed = threading.Event()

    def pull(ctx):
        with services.holding_pull(ctx) as progress:
            n = 0
            while True:
                n += 1
                services.pull_checkpoint(progress.progress_id, progress.run_token, checkpoint={"page": n})
                ctx.progress(processed=n)
                batches.release()
                proceed.wait(10)

    services.register_job_type(TEST_PULL, run=pull)
    try:
        first = services.claim_pull(system="nhanh", kind="customers", filters={"type": 1}, job_type=TEST_PULL,
                                    params={})
        t, box = in_thread(services.run_job, first.job.pk)
        assert batches.acquire(timeout=10)
        second = services.claim_pull(system="nhanh", kind="customers", filters={"type": 1}, job_type=TEST_PULL,
                                     params={}, force_restart=True)
        assert not second.resumed and second.progress.checkpoint == {}
        proceed.set()
        t.join(10)
        assert box.get("result") == JobStatus.CANCELLED, box
        old = reload(first.job)
        assert old.status == JobStatus.CANCELLED and "force-restarted" in old.error
        progress = PullProgress.objects.get()
        assert progress.job_id == second.job.pk and progress.status == PullStatus.RUNNING  # the new run holds it
    finally:
        services.unregister_job_type(TEST_PULL)


def test_the_cap_refuses_the_fourth_pull_and_stale_pulls_do_not_count(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "MAX_CONCURRENT_PULLS": 3}
    for f in ({"type": 1}, {"type": 2}, {"type": 3}):
        claim(f)
    with pytest.raises(services.PullCapReached) as exc:
        claim(None, system="shopify")
    assert "3 pulls are already running" in str(exc.value)
    PullProgress.objects.filter(progress_id=services.make_progress_id("nhanh", "customers", {"type": 1})).update(
        last_pulled_at=timezone.now() - timedelta(minutes=3)
    )
    claim(None, system="shopify")  # the stale one no longer counts


def test_concurrent_claims_never_exceed_the_cap(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "MAX_CONCURRENT_PULLS": 3}
    results = []
    barrier = threading.Barrier(6)

    def go(i):
        barrier.wait()
        try:
            results.append(claim({"type": i}))
        except services.PullRefused as exc:
            results.append(exc)

    threads = [in_thread(go, i)[0] for i in range(6)]
    for t in threads:
        t.join(30)
    assert sum(isinstance(r, services.PullClaim) for r in results) == 3
    assert sum(isinstance(r, services.PullCapReached) for r in results) == 3


def test_reset_deletes_progress_and_stops_the_holder():
    first = claim({"type": 1})
    claim(None, system="shopify")
    assert services.reset_pulls(system="nhanh", kind="customers") == 1
    assert list(PullProgress.objects.values_list("progress_id", flat=True)) == ["shopify_customers"]
    with pytest.raises(services.PullSuperseded):
        services.pull_checkpoint(first.progress.progress_id, first.progress.run_token)


def test_checkpoint_moves_only_with_its_batch_transaction():
    from django.db import transaction

    c = claim(None)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.pull_checkpoint(c.progress.progress_id, c.progress.run_token, checkpoint={"page": 9})
        raise RuntimeError("the batch failed to commit")
    assert PullProgress.objects.get().checkpoint == {}


def test_retry_reruns_with_the_same_params():
    seen = []
    services.register_job_type(TEST_TYPE, run=lambda ctx: seen.append(ctx.params))
    try:
        job = services.create_job(TEST_TYPE, params={"a": 1})
        services.run_job(job.pk)
        with connection.cursor():
            pass
        new = services.retry_job(reload(job))
        assert new.retry_of_id == job.pk and new.params == {"a": 1} and new.status == JobStatus.PENDING
    finally:
        services.unregister_job_type(TEST_TYPE)
