"""The pull framework's promises, proved on a test-only spec (tests/fakepull.py: a spec, a source and an upsert)
that writes no code for claims, 409s, force restart, resume, incremental marks or its entry points. Each rule
has a test that fails when the rule is removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from jobs import services
from jobs.models import BackgroundJob, JobStatus, PullMark, PullProgress, PullStatus
from jobs.pull_specs import start_pull, unregister_pull_spec
from tests import fakepull
from tests.conftest import test_database_url as database_url_for_processes
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ALL = f"{fakepull.SYSTEM}_{fakepull.KIND}"


@pytest.fixture(autouse=True)
def fake_spec(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False  # background pulls stay queued unless a test runs them
    saved = dict(fakepull.UPSTREAM, updated={}, poison=set())
    fakepull.register()
    fakepull.create_tables()
    yield fakepull
    fakepull.UPSTREAM.update(saved)
    unregister_pull_spec(fakepull.SYSTEM, fakepull.KIND)


def run(started) -> BackgroundJob:
    services.run_job(started.job.pk)
    return BackgroundJob.objects.get(pk=started.job.pk)


def upstream_ids(n=None) -> set[int]:
    return set(range(n if n is not None else fakepull.UPSTREAM["rows"]))


def in_thread(fn, *args, **kwargs):
    box = {}

    def target():
        from django.db import connections

        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        finally:
            connections.close_all()

    t = threading.Thread(target=target)
    t.start()
    return t, box


def test_a_spec_pulls_everything_and_a_second_run_changes_nothing():
    job = run(start_pull("fake", "things", "all"))
    assert job.status == JobStatus.COMPLETED, job.error
    assert set(fakepull.stored()) == upstream_ids()
    assert services.result_of(job).created == 100 and services.result_of(job).pages == 10
    again = run(start_pull("fake", "things", "all"))
    assert (services.result_of(again).created, services.result_of(again).updated) == (0, 100)
    assert PullProgress.objects.get(progress_id=ALL).status == PullStatus.COMPLETED


def test_same_id_is_refused_other_filters_get_their_own_id():
    first = start_pull("fake", "things", "all")
    with pytest.raises(services.PullConflict, match=f"job #{first.job.pk}"):
        start_pull("fake", "things", "all")
    other = start_pull("fake", "things", "group", filters={"group": "a"})
    assert other.progress_id.startswith(ALL + "_") and other.progress_id != first.progress_id
    with pytest.raises(services.PullInputError, match="needs --group"):
        start_pull("fake", "things", "group")
    with pytest.raises(services.PullInputError, match="not 'sideways'"):
        start_pull("fake", "things", "sideways")
    with pytest.raises(services.PullInputError, match="unknown filter"):
        start_pull("fake", "things", "all", filters={"colour": "red"})


def test_the_cap_counts_every_spec(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "MAX_CONCURRENT_PULLS": 1}
    start_pull("fake", "things", "all")
    with pytest.raises(services.PullCapReached):
        start_pull("fake", "things", "group", filters={"group": "b"})


def test_a_pull_refused_by_the_cap_starts_when_a_slot_frees(settings):
    """What ``manage.py demo`` queues past the cap: the task retries while the cap is full, then starts the pull
    once; a second delivery finds it running and starts nothing."""
    from celery.exceptions import Retry

    from jobs.tasks import start_pull_when_free_task

    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "MAX_CONCURRENT_PULLS": 1}
    holder = start_pull("fake", "things", "group", filters={"group": "b"})
    with pytest.raises(Retry):
        start_pull_when_free_task("fake", "things", "all")
    services.run_job(holder.job.pk)
    started = start_pull_when_free_task("fake", "things", "all")
    assert started["started"] and started["progress_id"] == ALL
    assert start_pull_when_free_task("fake", "things", "all")["started"] is False
    assert BackgroundJob.objects.filter(params__progress_id=ALL).count() == 1


def test_heartbeat_per_batch_keeps_a_pull_longer_than_the_stale_window_alive(settings):
    """The original tool's defect: a pull longer than the stale window looked dead and a second copy started."""
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "STALE_AFTER_SECONDS": 1, "UPSERT_BATCH_SIZE": 10}
    fakepull.UPSTREAM.update(rows=60, page_size=10, delay=0.35)  # ~2 s: twice the stale window
    started = start_pull("fake", "things", "all")
    t, box = in_thread(services.run_job, started.job.pk)
    refused = 0
    try:
        while t.is_alive():
            time.sleep(0.3)
            if not t.is_alive():
                break
            try:
                start_pull("fake", "things", "all")
            except services.PullConflict:
                refused += 1
            else:  # allowed only once the first run has finished
                assert BackgroundJob.objects.get(pk=started.job.pk).status == JobStatus.COMPLETED
                break
    finally:
        t.join(30)
    assert refused >= 4 and box.get("result") == JobStatus.COMPLETED, box
    assert set(fakepull.stored()) == upstream_ids(60)


def test_a_failure_inside_a_batch_write_leaves_the_checkpoint_with_the_rows_it_covers(settings):
    """Rows upserted and checkpoint moved in one transaction that then fails at COMMIT (a deferred constraint):
    neither is stored, and the resumed pull stores every row."""
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "UPSERT_BATCH_SIZE": 20}
    fakepull.UPSTREAM.update(poison={47})  # the third batch (rows 40–59) cannot commit
    failed = run(start_pull("fake", "things", "all"))
    assert failed.status == JobStatus.FAILED and "IntegrityError" in failed.error
    progress = PullProgress.objects.get(progress_id=ALL)
    assert progress.status == PullStatus.FAILED
    assert progress.checkpoint["cursor"] == 40 and progress.items_done == 40
    assert set(fakepull.stored()) == upstream_ids(40)
    fakepull.UPSTREAM.update(poison=set())
    resumed = start_pull("fake", "things", "all")
    assert resumed.resumed
    job = run(resumed)
    assert job.status == JobStatus.COMPLETED and job.metadata["resumed_from"]["rows"] == 40
    assert set(fakepull.stored()) == upstream_ids()


def slow_pull_running(settings, rows_done: int):
    """A slow "all" pull running on a thread, once ``rows_done`` rows are committed: (started, thread, box)."""
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "UPSERT_BATCH_SIZE": 10}
    fakepull.UPSTREAM.update(delay=0.2)
    first = start_pull("fake", "things", "all")
    t, box = in_thread(services.run_job, first.job.pk)
    wait_for(lambda: PullProgress.objects.filter(progress_id=ALL, items_done__gte=rows_done).exists(), timeout=20,
             message=f"{rows_done} rows committed")
    return first, t, box


def test_force_restart_supersedes_the_running_pull_which_stops_at_its_next_batch(settings):
    first, t, box = slow_pull_running(settings, 20)
    fakepull.UPSTREAM.update(delay=0)
    second = start_pull("fake", "things", "all", force_restart=True)
    assert not second.resumed
    t.join(30)
    assert box.get("result") == JobStatus.CANCELLED
    assert "force-restarted" in BackgroundJob.objects.get(pk=first.job.pk).error
    assert run(second).status == JobStatus.COMPLETED
    assert PullProgress.objects.get(progress_id=ALL).job_id == second.job.pk


def test_a_reset_stops_the_running_pull(settings):
    _first, t, box = slow_pull_running(settings, 10)
    assert services.reset_pulls(progress_ids=[ALL]) == 1
    t.join(30)
    assert box.get("result") == JobStatus.CANCELLED
    assert not PullProgress.objects.filter(progress_id=ALL).exists()


def test_incremental_mode_reads_its_window_and_its_mark_moves_only_on_success():
    now = int(time.time())
    fakepull.UPSTREAM["updated"].update({3: now - 3600, 5: now - 60})  # changed within the first 24 h window
    first = run(start_pull("fake", "things", "new"))
    assert first.status == JobStatus.COMPLETED and set(fakepull.stored()) == {3, 5}
    mark = PullMark.objects.get(key=f"{ALL}_new").value["updated_to"]
    assert mark >= now
    fakepull.UPSTREAM["updated"].update({7: int(time.time())})
    fakepull.UPSTREAM["poison"] = {7}
    failed = start_pull("fake", "things", "new")
    assert failed.job.status == JobStatus.FAILED
    assert PullMark.objects.get(key=f"{ALL}_new").value["updated_to"] == mark  # not moved by a failed run
    fakepull.UPSTREAM["poison"] = set()
    again = start_pull("fake", "things", "new")
    assert again.job.status == JobStatus.COMPLETED and 7 in fakepull.stored()
    window = again.job.metadata["window"]
    assert window["from"] < window["to"]


def test_capped_mode_continues_where_the_previous_run_stopped_and_wraps():
    first = start_pull("fake", "things", "next").job
    assert first.status == JobStatus.COMPLETED and first.processed == 25 and set(fakepull.stored()) == upstream_ids(25)
    runs = 1
    while PullMark.objects.get(key=f"{ALL}_next").value["cursor"] is not None:
        before = set(fakepull.stored())
        job = start_pull("fake", "things", "next").job
        assert job.status == JobStatus.COMPLETED and set(fakepull.stored()) > before  # new rows every run
        runs += 1
        assert runs < 10
    assert set(fakepull.stored()) == upstream_ids()
    wrapped = start_pull("fake", "things", "next").job  # back to the start
    assert wrapped.metadata["continues_from"] is None and services.result_of(wrapped).updated == 25


def test_the_cli_the_json_api_and_the_admin_page_need_no_code_of_the_spec(staff_client, capsys):
    call_command("pull", "fake", "things", "--mode", "all", "--wait")
    assert "Done: 100 created" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no 'widgets' pulls from 'fake'; known pulls: .*fake things"):
        call_command("pull", "fake", "widgets")
    with pytest.raises(CommandError, match="--query do"):
        call_command("pull", "fake", "things", "--query", "x")
    call_command("pull", "fake", "things", "--group", "g1")  # the mode follows from the filter
    assert "queued as job #" in capsys.readouterr().out
    url = reverse("jobs:start-pull", args=["things"])
    r = staff_client.post(url, {"system": "fake", "mode": "group", "filters": {"group": "g1"}},
                          content_type="application/json")
    assert r.status_code == 409 and r.json()["running"]["progress_id"].startswith(ALL + "_")
    r = staff_client.post(url, {"system": "fake", "mode": "new"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["job"]["status"] == JobStatus.COMPLETED
    page = reverse("admin:jobs_pullprogress_start", args=["fake", "things"])
    assert "One group of things" in staff_client.get(page).content.decode()
    assert "Pull fake things" in staff_client.get(reverse("admin:jobs_pullprogress_changelist")).content.decode()
    html = staff_client.post(page, {"mode": "all"}, follow=True).content.decode()
    assert "Pull started in the background" in html


PULL_IN_A_PROCESS = """
import os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from tests import fakepull
fakepull.register()
from django.core.management import call_command
call_command("pull", "fake", "things", "--mode", "all", "--wait")
"""


def test_a_pull_killed_with_its_process_resumes_from_its_checkpoint_and_loses_nothing(settings, tmp_path):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "STALE_AFTER_SECONDS": 2}
    env = {**os.environ, "DATABASE_URL": database_url_for_processes(), "FAKE_ROWS": "400", "FAKE_PAGE_SIZE": "10",
           "FAKE_DELAY": "0.05", "SHOPBRIDGE_UPSERT_BATCH_SIZE": "20", "SHOPBRIDGE_STALE_AFTER_SECONDS": "2"}
    log = (tmp_path / "pull.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", PULL_IN_A_PROCESS], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: PullProgress.objects.filter(progress_id=ALL, items_done__gte=100).exists(), timeout=60,
                 message=f"batches committed by the process: {(tmp_path / 'pull.log').read_text()}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no cleanup, no final status
        proc.wait(10)
    progress = PullProgress.objects.get(progress_id=ALL)
    assert progress.status == PullStatus.RUNNING and progress.checkpoint["cursor"]
    assert len(fakepull.stored()) == progress.items_done  # the checkpoint covers exactly what was committed
    wait_for(lambda: PullProgress.objects.get(progress_id=ALL).is_stale, timeout=10, message="stale")
    fakepull.UPSTREAM.update(rows=400)
    resumed = start_pull("fake", "things", "all")
    assert resumed.resumed
    job = run(resumed)
    assert job.status == JobStatus.COMPLETED, job.error
    assert json.dumps(job.metadata["resumed_from"]) and job.metadata["resumed_from"]["rows"] == progress.items_done
    assert set(fakepull.stored()) == upstream_ids(400)
