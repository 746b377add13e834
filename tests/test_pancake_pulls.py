"""Pancake page-customer pulls end to end: real HTTP to the sandbox, the real database, the pull framework."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from integrations.sandbox.server import control
from jobs.errors import PullConflict
from jobs.models import JobStatus, PullProgress
from jobs.pull_specs import start_pull
from pancake.models import PancakeCustomer, PancakeCustomerPhone, PancakePage
from tests.pancake_helpers import connect, page_report, pull, stored, truth

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_BACKOFF_BASE": 0.01, "HTTP_BACKOFF_MAX": 0.05,
                           "UPSERT_BATCH_SIZE": 500}
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def server(sandbox_factory):
    return sandbox_factory(customers=400, seed=11, only=["pancake"], pancake_pages=2, pancake_customers=600,
                           rate_limit=False)


def test_backfill_fills_an_empty_page_and_stops_early_on_later_runs(server):
    pages = connect(server)
    job = pull("backfill")
    assert job.status == JobStatus.COMPLETED, job.error
    for page_id in pages:
        assert stored(page_id) == truth(server, page_id)
        assert page_report(job, page_id)["results_pages"] == 6 and page_report(job, page_id)["stopped"] == "short page"
    assert job.metadata["created"] == 1200 and job.metadata["failed"] == 0
    assert PancakeCustomerPhone.objects.count() > 1000  # normalized phones in the child table
    again = pull("backfill")
    assert again.status == JobStatus.COMPLETED
    for page_id in pages:  # until = the oldest stored: one short page, nothing new
        assert page_report(again, page_id)["results_pages"] == 1
    assert again.metadata["created"] == again.metadata["updated"] == 0


def test_the_first_incremental_takes_30_days_and_later_ones_only_what_changed(server):
    pages = connect(server)
    first = pull("incremental")
    assert first.status == JobStatus.COMPLETED, first.error
    for page_id in pages:
        since = page_report(first, page_id)["since"]
        assert abs(since - (time.time() - 30 * 86400)) < 120
        recent = {p: t for p, t in truth(server, page_id).items()
                  if datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() >= since}
        assert stored(page_id) == recent and 40 < len(recent) < 300
    touched = [control(server.base_url, "pancake", "touch", {"page_id": pages[0], "psid": psid})["result"]["psid"]
               for psid in list(truth(server, pages[0]))[-3:]]  # three of the oldest customers
    time.sleep(1.1)  # into the next second: until (whole seconds) covers them
    later = pull("incremental")
    assert later.status == JobStatus.COMPLETED, later.error
    assert later.metadata["created"] == 3 and later.metadata["updated"] == 0  # old rows, new to us
    assert page_report(later, pages[0])["results_pages"] == 1 and page_report(later, pages[1])["rows"] <= 1
    assert set(touched) <= set(stored(pages[0]))
    assert all(stored(pages[0])[p] == truth(server, pages[0])[p] for p in touched)


def test_convergence_under_live_mutation(server):
    """Backfill and incremental run together while the sandbox inserts and updates customers (moving them to the
    front of the list); once it stops, one more incremental makes the stored set equal the sandbox's exactly."""
    pages = connect(server)
    control(server.base_url, "pancake", "faults", {"latency_ms": 15, "mutations_per_second": 150})
    jobs, errors = {}, []

    def run(mode):
        try:
            jobs[mode] = pull(mode)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(mode,)) for mode in ("backfill", "incremental")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(job.status == JobStatus.COMPLETED for job in jobs.values()), [j.error for j in jobs.values()]
    # More incrementals, still under mutation, until the sandbox has changed over 100 customers under the
    # pulls (faster pulls see fewer changes per run, so this counts changes, not runs).
    during, deadline = [], time.monotonic() + 60
    while not during or (server.apps["pancake"].mutations <= 100 and time.monotonic() < deadline):
        during.append(pull("incremental"))
        assert during[-1].status == JobStatus.COMPLETED, during[-1].error
    mutated = control(server.base_url, "pancake", "faults", {"mutations_per_second": 0})
    assert mutated["mutations_per_second"] == 0
    assert server.apps["pancake"].mutations > 100
    rereads = sum(page_report(j, p)["reread_pages"] for j in (*jobs.values(), *during) for p in pages)
    assert rereads > 0  # rows did move under the page numbers, and the pulls noticed
    time.sleep(1.1)
    final = pull("incremental")
    assert final.status == JobStatus.COMPLETED
    for page_id in pages:
        expected = truth(server, page_id)
        got = stored(page_id)
        assert set(got) == set(expected), (len(set(expected) - set(got)), len(set(got) - set(expected)))
        assert got == expected  # every stored updated_at equals the sandbox's
    assert PancakeCustomer.objects.count() == sum(len(truth(server, p)) for p in pages)  # none duplicated


def test_an_unparseable_time_is_counted_and_reported_not_fatal(server):
    connect(server)
    control(server.base_url, "pancake", "faults", {"malformed_rate": 0.05})
    job = pull("backfill")
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.metadata["failed"] > 20
    assert any("updated_at is not a time Pancake sends" in e for e in job.metadata["errors"])
    reports = job.metadata["pancake_pages"].values()
    assert sum(r["unparseable_times"] for r in reports) == job.metadata["failed"]
    assert PancakeCustomer.objects.count() == 1200 - job.metadata["failed"]


def test_a_rejected_page_token_is_regenerated_and_stored(server):
    pages = connect(server)
    PancakePage.objects.filter(page_id=pages[0]).update(page_access_token="")  # e.g. set up with the user token only
    job = pull("incremental", pages[0])
    assert job.status == JobStatus.COMPLETED, job.error
    page = PancakePage.objects.get(page_id=pages[0])
    assert page.page_access_token == control(server.base_url, "pancake", "tokens")["result"][pages[0]]
    assert page.token_renewed_at is not None and job.metadata["tokens_renewed"] == 1
    assert page.page_access_token not in repr(page)


def test_one_failing_page_does_not_stop_the_others(server):
    pages = connect(server)
    PancakePage.objects.filter(page_id=pages[1]).update(page_access_token="stale", user_access_token="revoked")
    job = pull("backfill")
    assert job.status == JobStatus.COMPLETED, job.error
    assert stored(pages[0]) == truth(server, pages[0])
    assert page_report(job, pages[1])["stopped"] == "token refused"
    assert "user access token" in page_report(job, pages[1])["errors"][0]
    assert not PancakeCustomer.objects.filter(page_id=pages[1]).exists()


def test_a_failing_results_page_is_recorded_and_the_next_run_reads_it_again(server):
    pages = connect(server)
    control(server.base_url, "pancake", "faults", {"server_error_next": 6})  # the first results page: 1 + 5 retries
    job = pull("backfill", pages[0])
    assert job.status == JobStatus.COMPLETED, job.error
    report = page_report(job, pages[0])
    assert report["failed_results_pages"] == 1 and "results page 1" in report["errors"][0]
    assert 0 < len(stored(pages[0])) < 600  # the others went on
    assert PancakePage.objects.get(page_id=pages[0]).backfill_ceiling is not None  # unclean: re-read next time
    again = pull("backfill", pages[0])
    assert stored(pages[0]) == truth(server, pages[0])
    assert PancakePage.objects.get(page_id=pages[0]).backfill_ceiling is None
    assert page_report(again, pages[0])["failed_results_pages"] == 0


def test_a_429_storm_during_a_pull(server):
    pages = connect(server, rate=200)
    control(server.base_url, "pancake", "faults", {"rate_limit_next": 3})
    job = pull("backfill", pages[0])
    assert job.status == JobStatus.COMPLETED, job.error
    assert stored(pages[0]) == truth(server, pages[0])
    assert job.metadata["rate_slowdowns"] == 3 and job.metadata["final_rate"] < 200


def test_progress_ids_per_mode_and_page(server):
    pages = connect(server)
    first = start_pull("pancake", "customers", "backfill", filters={"page_id": pages[0]}, start_now=False)
    assert first.progress_id == f"pancake_customers_backfill_{pages[0]}"
    other = start_pull("pancake", "customers", "incremental", filters={"page_id": pages[0]}, start_now=False)
    assert other.progress_id == f"pancake_customers_incremental_{pages[0]}"  # overlaps the backfill: allowed
    with pytest.raises(PullConflict):  # the same one twice is not
        start_pull("pancake", "customers", "backfill", filters={"page_id": pages[0]}, start_now=False)
    assert PullProgress.objects.filter(progress_id__startswith="pancake_customers_").count() == 2


def test_the_pull_command(server, capsys):
    pages = connect(server)
    call_command("pull", "pancake", "customers", "--mode", "backfill", "--page-id", pages[1], "--wait")
    assert "1 failed" not in capsys.readouterr().out
    assert stored(pages[1]) == truth(server, pages[1]) and not stored(pages[0])
    with pytest.raises(CommandError, match="no Pancake page 42"):
        call_command("pull", "pancake", "customers", "--mode", "incremental", "--page-id", "42", "--wait")
    with pytest.raises(CommandError, match="incremental, backfill"):
        call_command("pull", "pancake", "customers", "--mode", "all")


def test_an_older_version_never_overwrites_a_newer_one(server):
    """A backfill that read a customer before an update lands after the incremental stored the update."""
    from pancake.services.pulls import upsert_pancake_customers

    pages = connect(server)
    new = {"psid": "1", "page_id": pages[0], "name": "new", "updated_at": "2026-11-30T10:00:00.000000"}
    old = {**new, "name": "old", "updated_at": "2026-11-01T10:00:00"}
    upsert_pancake_customers([new])
    result = upsert_pancake_customers([old])
    assert result.skipped == 1
    row = PancakeCustomer.objects.get()
    assert row.name == "new" and row.upstream_updated_at == datetime(2026, 11, 30, 10, tzinfo=UTC)
    upsert_pancake_customers([{**new, "name": "newer", "updated_at": "2026-11-30T10:00:00.5Z"}])
    assert PancakeCustomer.objects.get().name == "newer"
    assert PancakeCustomer.objects.get().upstream_updated_at - row.upstream_updated_at == timedelta(milliseconds=500)


def test_demo_adds_the_sandboxs_pages_and_the_first_pull_generates_their_tokens(sandbox_factory, capsys):
    server = sandbox_factory(customers=100, seed=2, only=["pancake"], pancake_pages=3, pancake_customers=50,
                             rate_limit=False)
    call_command("demo", "--sandbox-url", server.base_url)
    assert sorted(PancakePage.objects.values_list("page_id", flat=True)) == sorted(server.apps["pancake"].pages)
    assert "Pancake pages" in capsys.readouterr().out
    from integrations.models import Connection

    Connection.objects.filter(system="pancake").update(base_url=server.url_for("pancake"), requests_per_window=500)
    job = pull("backfill")
    assert job.status == JobStatus.COMPLETED and PancakeCustomer.objects.count() == 150
    assert job.metadata["tokens_renewed"] == 3


def test_a_resumed_run_continues_the_same_fixed_window(server):
    from integrations.clients import client_for
    from pancake.services.pulls import PancakeCustomerSource

    pages = connect(server)
    client = client_for("pancake")
    first = PancakeCustomerSource(client, "backfill", pages).pages(None)
    seen = [next(first) for _ in range(3)]  # a worker dies after three results pages
    first.close()
    cursor = seen[-1].cursor_after
    assert cursor["page_id"] == pages[0] and cursor["page_number"] == 4 and cursor["done"] == []
    time.sleep(1.1)
    control(server.base_url, "pancake", "mutate", {"page_id": pages[0], "count": 20})  # meanwhile, changes
    rest = list(PancakeCustomerSource(client, "backfill", pages).pages(cursor))
    assert rest[0].cursor_after["until"] == cursor["until"]  # the window did not move
    psids = {r["psid"] for p in seen + rest for r in p.rows if r["page_id"] == pages[0]}
    original = {p for p, t in truth(server, pages[0]).items()
                if datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() <= cursor["until"]}
    assert original <= psids  # nothing of the old window lost across the resume
    assert rest[-1].cursor_after is None
    client.close()


def test_the_beat_schedules():
    from config.schedules import SCHEDULES

    by_task = {s.task: s for s in SCHEDULES}
    assert by_task["pancake.pull_incremental"].crontab == "*/5 * * * *"
    assert by_task["pancake.pull_backfill"].crontab == "0 2 * * *"
    assert all(by_task[t].expires_seconds > 0 for t in ("pancake.pull_incremental", "pancake.pull_backfill"))
