"""Customer pulls end to end: real HTTP to the sandboxes, the real database, real worker processes."""

from __future__ import annotations

import signal
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from customers.models import NhanhCustomer, NhanhCustomerPhone
from customers.tasks import pull_customers
from integrations.models import Connection
from integrations.nhanh import sandbox as nhanh_sandbox
from integrations.sandbox.server import control
from jobs import services as jobs
from jobs.errors import PullInputError
from jobs.models import BackgroundJob, JobStatus, PullMark, PullProgress, PullStatus, StartedBy
from jobs.pull_specs import start_pull
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 4, "HTTP_BACKOFF_BASE": 0.01,
                           "HTTP_BACKOFF_MAX": 0.05, "UPSERT_BATCH_SIZE": 500}
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def connect_nhanh(server, **overrides):
    fields = {"base_url": server.url_for("nhanh"), "app_id": nhanh_sandbox.SANDBOX_APP_ID,
              "business_id": nhanh_sandbox.SANDBOX_BUSINESS_ID, "access_token": nhanh_sandbox.SANDBOX_ACCESS_TOKEN,
              "requests_per_window": 150, "window_seconds": 30, "is_sandbox": True, **overrides}
    Connection.objects.update_or_create(system="nhanh", defaults=fields)


def expected_ids(server, filters=None) -> set[int]:
    return set(control(server.base_url, "nhanh", "expected", {"filters": filters or {}})["result"])


def stored_ids() -> set[int]:
    return set(NhanhCustomer.objects.values_list("nhanh_id", flat=True))


def PULL_URL():  # noqa: N802 - reads like the URL it is
    return reverse("jobs:start-pull", args=["customers"])


def job_of(started) -> BackgroundJob:
    return BackgroundJob.objects.get(pk=started.job.pk)


@pytest.fixture
def nhanh(sandbox_factory):
    server = sandbox_factory(customers=1200, seed=11)
    connect_nhanh(server)
    return server


def test_pull_all_stores_exactly_the_sandbox_and_a_second_pull_is_idempotent(nhanh):
    job = job_of(start_pull("nhanh", "customers", "all", started_by=StartedBy.USER))
    assert job.status == JobStatus.COMPLETED, job.error
    assert stored_ids() == expected_ids(nhanh)
    assert job.metadata["created"] == 1200 and job.metadata["pages"] >= 12
    assert (job.processed, job.successful, job.failed) == (1200, 1200, 0)
    # Every valid phone is normalized into the phone table.
    assert NhanhCustomerPhone.objects.count() > 1100
    assert not NhanhCustomerPhone.objects.exclude(e164__startswith="+84").exists()
    again = job_of(start_pull("nhanh", "customers", "all"))
    assert again.metadata["created"] == 0 and again.metadata["updated"] == 0 and again.metadata["skipped"] == 1200
    assert NhanhCustomer.objects.count() == 1200
    # A changed customer upstream is updated, nothing else.
    some_id = min(stored_ids())
    control(nhanh.base_url, "nhanh", "touch", {"ids": [some_id], "totalAmount": 12_345_000})
    third = job_of(start_pull("nhanh", "customers", "all"))
    assert (third.metadata["updated"], third.metadata["skipped"]) == (1, 1199)
    assert NhanhCustomer.objects.get(nhanh_id=some_id).total_spent == 12_345_000
    assert PullProgress.objects.get(progress_id="nhanh_customers").status == PullStatus.COMPLETED


def test_filtered_pull_gets_its_own_id_and_exactly_the_filtered_rows(nhanh):
    started = start_pull("nhanh", "customers", "filtered", filters={"type": 2, "lastBoughtDateFrom": "2025-06-01"})
    assert started.progress_id.startswith("nhanh_customers_") and started.progress_id != "nhanh_customers"
    job = job_of(started)
    assert job.status == JobStatus.COMPLETED
    want = expected_ids(nhanh, {"type": 2, "lastBoughtDateFrom": "2025-06-01"})
    assert 0 < len(want) < 1200 and stored_ids() == want
    other = start_pull("nhanh", "customers", "filtered", filters={"type": 3})
    assert other.progress_id != started.progress_id
    with pytest.raises(PullInputError):
        start_pull("nhanh", "customers", "filtered", filters={})
    with pytest.raises(PullInputError, match="date like"):
        start_pull("nhanh", "customers", "filtered", filters={"lastBoughtDateFrom": "31/12/2024"})


def test_pull_5000_is_synchronous_capped_and_continues_where_it_stopped(nhanh, settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "PULL_LIMIT_SYNC": 500}
    first = start_pull("nhanh", "customers", "limit")
    assert first.synchronous and first.job.status == JobStatus.COMPLETED and first.job.processed == 500
    first_ids = stored_ids()
    second = start_pull("nhanh", "customers", "limit")
    assert second.job.processed == 500
    assert len(stored_ids()) == 1000 and first_ids < stored_ids()  # the next 500, not the same ones again
    third = start_pull("nhanh", "customers", "limit")
    assert third.job.processed == 200 and stored_ids() == expected_ids(nhanh)
    assert PullMark.objects.get(key="nhanh_customers_limit").value == {"cursor": None}  # wraps to the start


def test_new_updated_pull_uses_the_last_24_hours_first_then_its_high_water_mark(nhanh):
    first = start_pull("nhanh", "customers", "new")
    assert first.synchronous and first.job.status == JobStatus.COMPLETED
    import time

    now = int(time.time())
    assert stored_ids() == expected_ids(nhanh, {"updatedAtFrom": now - 24 * 3600 - 60, "updatedAtTo": now})
    mark = PullMark.objects.get(key="nhanh_customers_new").value["updated_to"]
    changed = sorted(expected_ids(nhanh) - stored_ids())[:3]
    control(nhanh.base_url, "nhanh", "touch", {"ids": changed, "totalAmount": 999_000})
    second = start_pull("nhanh", "customers", "new")
    assert set(changed) <= stored_ids()
    assert second.job.metadata["created"] == 3
    assert PullMark.objects.get(key="nhanh_customers_new").value["updated_to"] >= mark


def test_two_simultaneous_starts_of_the_same_pull_one_runs_one_is_refused(nhanh, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False  # leave the claimed jobs queued; this is about the claim
    barrier = threading.Barrier(2)
    results = []

    def start():
        from django.db import connections

        barrier.wait()
        try:
            results.append(start_pull("nhanh", "customers", "filtered", filters={"type": 1}))
        except jobs.PullRefused as exc:
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(type(r).__name__ for r in results) == ["PullConflict", "PullStarted"]
    assert "already running" in str(next(r for r in results if isinstance(r, jobs.PullConflict)))
    # Other filters and the other system are not blocked.
    start_pull("nhanh", "customers", "filtered", filters={"type": 2})
    start_pull("nhanh", "customers", "all")


def test_different_filters_and_systems_run_together(nhanh, celery_worker_process):
    celery_worker_process()
    celery_worker_process()
    control(nhanh.base_url, "nhanh", "faults", {"latency_ms": 150})
    a = start_pull("nhanh", "customers", "filtered", filters={"type": 1})
    b = start_pull("nhanh", "customers", "filtered", filters={"type": 2})
    for started in (a, b):
        wait_for(lambda s=started: not job_of(s).is_active, timeout=120, message="pull finished")
        assert job_of(started).status == JobStatus.COMPLETED
    ja, jb = job_of(a), job_of(b)
    # Ran at the same time, on two workers: their run intervals overlap.
    assert ja.started_at < jb.completed_at and jb.started_at < ja.completed_at, (
        ja.started_at, ja.completed_at, jb.started_at, jb.completed_at)
    assert stored_ids() == expected_ids(nhanh, {"type": 1}) | expected_ids(nhanh, {"type": 2})


def test_worker_killed_mid_pull_resumes_from_its_checkpoint_and_loses_nothing(sandbox_factory, settings,
                                                                             celery_worker_process):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "STALE_AFTER_SECONDS": 3, "UPSERT_BATCH_SIZE": 200}
    server = sandbox_factory(customers=3000, seed=5)
    connect_nhanh(server)
    control(server.base_url, "nhanh", "faults", {"latency_ms": 25})
    worker = celery_worker_process(SHOPBRIDGE_UPSERT_BATCH_SIZE=200)
    first = start_pull("nhanh", "customers", "all")
    wait_for(lambda: PullProgress.objects.filter(progress_id="nhanh_customers", items_done__gte=800).exists(),
             timeout=120, message=f"some batches committed; worker log:\n{worker.log()}")
    worker.kill(signal.SIGKILL)  # no cleanup, no final status: a machine dying mid-pull
    progress = PullProgress.objects.get(progress_id="nhanh_customers")
    assert progress.status == PullStatus.RUNNING and progress.checkpoint["cursor"]
    done_before = progress.items_done
    assert NhanhCustomer.objects.count() == done_before  # the checkpoint covers exactly what was committed
    with pytest.raises(jobs.PullConflict):  # heartbeat still fresh: the dead pull still holds the id
        start_pull("nhanh", "customers", "all")
    wait_for(lambda: PullProgress.objects.get(progress_id="nhanh_customers").is_stale, timeout=10,
             message="pull goes stale")
    control(server.base_url, "nhanh", "faults", {"latency_ms": 0})
    resumed = start_pull("nhanh", "customers", "all")
    assert resumed.resumed
    celery_worker_process()  # a new worker (another machine, say) picks the queued resume up
    wait_for(lambda: not job_of(resumed).is_active, timeout=120, message="resumed pull finished")
    job = job_of(resumed)
    assert job.status == JobStatus.COMPLETED, job.error
    assert job.metadata["resumed_from"]["rows"] == done_before
    assert job.metadata["pages"] < 30 + 1 and job.processed == 3000
    assert stored_ids() == expected_ids(server) and NhanhCustomer.objects.count() == 3000
    assert BackgroundJob.objects.get(pk=first.job.pk).status == JobStatus.RUNNING  # shown stale on the dashboard
    assert BackgroundJob.objects.get(pk=first.job.pk).is_stale


def test_a_429_storm_and_a_5xx_burst_are_ridden_out(nhanh, settings):
    # Six failures in a row on one request: within the production retry budget (8 attempts).
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "HTTP_MAX_ATTEMPTS": 8}
    control(nhanh.base_url, "nhanh", "faults", {"rate_limit_next": 3, "server_error_next": 3})
    job = job_of(start_pull("nhanh", "customers", "all"))
    assert job.status == JobStatus.COMPLETED, job.error
    assert stored_ids() == expected_ids(nhanh)


def test_when_retries_run_out_the_job_fails_with_its_checkpoint_kept_and_a_rerun_resumes(nhanh, settings):
    settings.SHOPBRIDGE = {**settings.SHOPBRIDGE, "UPSERT_BATCH_SIZE": 100}
    control(nhanh.base_url, "nhanh", "faults", {"latency_ms": 30})
    box = {}

    def pull():
        from django.db import connections

        try:
            box["started"] = start_pull("nhanh", "customers", "all")
        finally:
            connections.close_all()

    t = threading.Thread(target=pull)
    t.start()
    wait_for(lambda: PullProgress.objects.filter(items_done__gte=300).exists(), timeout=60, message="progress")
    control(nhanh.base_url, "nhanh", "faults", {"server_error_next": 1000})
    t.join(60)
    job = job_of(box["started"])
    assert job.status == JobStatus.FAILED and "UpstreamUnavailable" in job.error
    progress = PullProgress.objects.get(progress_id="nhanh_customers")
    assert progress.status == PullStatus.FAILED and progress.checkpoint["cursor"]
    assert NhanhCustomer.objects.count() == progress.items_done >= 300
    control(nhanh.base_url, "nhanh", "faults", {"server_error_next": 0, "latency_ms": 0})
    again = start_pull("nhanh", "customers", "all")
    assert again.resumed and job_of(again).status == JobStatus.COMPLETED
    assert stored_ids() == expected_ids(nhanh)


def test_malformed_rows_are_counted_with_reasons_and_the_pull_goes_on(nhanh):
    control(nhanh.base_url, "nhanh", "faults", {"malformed_rate": 0.05})
    job = job_of(start_pull("nhanh", "customers", "all"))
    assert job.status == JobStatus.COMPLETED
    assert 20 < job.failed < 120 and job.successful + job.failed == 1200
    assert job.metadata["errors"] and len(job.metadata["errors"]) <= 20
    reasons = " ".join(job.metadata["errors"])
    assert any(word in reasons for word in ("is missing", "is not a number", "is not 1, 2 or 3"))
    assert NhanhCustomer.objects.count() == job.successful


def test_rejected_credentials_fail_the_job_at_once_with_a_clear_message(nhanh):
    connect_nhanh(nhanh, access_token="not-the-token")
    job = job_of(start_pull("nhanh", "customers", "all"))
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("AuthRejected") and "ERR_INVALID_ACCESS_TOKEN" in job.error
    assert "not-the-token" not in job.error
    assert control(nhanh.base_url, "nhanh", "status", {})["requests_served"] == 1  # no retries
    assert PullProgress.objects.get().status == PullStatus.FAILED


def test_missing_connection_fails_with_instructions(db):
    job = job_of(start_pull("nhanh", "customers", "all"))
    assert job.status == JobStatus.FAILED and "manage.py demo" in job.error


# --- the three doors: admin, JSON, CLI, beat ---------------------------------------------------------------
def test_admin_pull_form_runs_synchronous_pulls_and_queues_background_ones(nhanh, staff_client):
    url = reverse("admin:customers_nhanhcustomer_pull")
    assert "Pull 5000" in staff_client.get(url).content.decode()
    page = staff_client.post(url, {"mode": "new"}, follow=True)
    assert "Pull finished" in page.content.decode() and "created" in page.content.decode()
    page = staff_client.post(url, {"mode": "filtered", "customer_type": "3"}, follow=True)
    html = page.content.decode()
    assert "Pull started in the background" in html and "job #" in html
    changelist = staff_client.get(reverse("admin:customers_nhanhcustomer_changelist")).content.decode()
    assert "Pull from Nhanh" in changelist


def test_admin_refusal_says_which_pull_holds_the_id_and_since_when(nhanh, staff_client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False
    holder = start_pull("nhanh", "customers", "all")
    page = staff_client.post(reverse("admin:customers_nhanhcustomer_pull"), {"mode": "all"}, follow=True)
    html = page.content.decode()
    assert f"Pull nhanh_customers is already running (job #{holder.job.pk}) since" in html


def test_force_restart_needs_its_permission(nhanh, client, django_user_model, settings):
    from django.contrib.auth.models import Permission

    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False
    user = django_user_model.objects.create_user("clerk", password="x-pass-12345", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_pull"))
    client.force_login(user)
    form = client.get(reverse("admin:customers_nhanhcustomer_pull")).content.decode()
    assert "force_restart" not in form
    start_pull("nhanh", "customers", "all")
    r = client.post(PULL_URL(), {"system": "nhanh", "mode": "all", "force_restart": True},
                    content_type="application/json")
    assert r.status_code == 403


def test_json_endpoint_answers_202_409_400_and_refuses_anonymous(nhanh, staff_client, settings):
    from django.test import Client

    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False
    url = PULL_URL()
    assert Client().post(url, {}, content_type="application/json").status_code == 401
    r = staff_client.post(url, {"system": "nhanh", "mode": "all"}, content_type="application/json")
    assert r.status_code == 202 and r.json()["progress_id"] == "nhanh_customers"
    job_id = r.json()["job_id"]
    r = staff_client.post(url, {"system": "nhanh", "mode": "all"}, content_type="application/json")
    assert r.status_code == 409 and r.json()["running"]["job_id"] == job_id
    assert "already running" in r.json()["error"]
    r = staff_client.post(url, {"system": "nhanh", "mode": "sideways"}, content_type="application/json")
    assert r.status_code == 400 and "not 'sideways'" in r.json()["error"]
    r = staff_client.post(url, {"system": "nhanh", "mode": "all", "force_restart": True},
                          content_type="application/json")
    assert r.status_code == 202 and r.json()["job_id"] != job_id


def test_json_endpoint_needs_csrf_for_browser_sessions(nhanh, staff_user):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    r = browser.post(PULL_URL(), {"system": "nhanh"}, content_type="application/json")
    assert r.status_code == 403


def test_cli_pull_with_wait_shows_progress_and_exits_nonzero_when_refused(nhanh, capsys, settings):
    call_command("pull", "nhanh", "customers", "--mode", "limit", "--wait")
    out = capsys.readouterr()
    assert "Done:" in out.out and "created" in out.out
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app

    app.conf.task_always_eager = False
    call_command("pull", "nhanh", "customers", "--type", "1")
    assert "queued as job #" in capsys.readouterr().out
    with pytest.raises(CommandError, match="already running"):
        call_command("pull", "nhanh", "customers", "--type", "1")


def test_cli_wait_exits_nonzero_when_the_pull_fails(nhanh):
    connect_nhanh(nhanh, access_token="wrong")
    with pytest.raises(CommandError, match="failed: AuthRejected"):
        call_command("pull", "nhanh", "customers", "--mode", "all", "--wait")


def test_beat_task_starts_a_pull_marked_as_beat_and_skips_a_running_one(nhanh):
    result = pull_customers.delay("nhanh", "new").get()
    job = BackgroundJob.objects.get(pk=result["job_id"])
    assert job.started_by == StartedBy.BEAT and job.status == JobStatus.COMPLETED
    jobs.claim_pull(system="nhanh", kind="customers", filters=None, job_type="PULL_NHANH_CUSTOMERS", params={},
                    progress_id="nhanh_customers_new")
    assert "refused" in pull_customers.delay("nhanh", "new").get()
