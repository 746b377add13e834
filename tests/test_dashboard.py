"""The job dashboard (admin changelist + detail) and the staff JSON endpoint."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from customers.job_types import CustomerJobType as JobType
from jobs import services
from jobs.models import BackgroundJob, JobStatus, PullProgress, StartedBy

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs_on_board(staff_user):
    now = timezone.now()
    running = services.create_job(JobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.USER, user=staff_user,
                                  metadata={"filters": {"type": 1}, "pages": 3})
    BackgroundJob.objects.filter(pk=running.pk).update(
        status=JobStatus.RUNNING, total=1000, processed=250, successful=248, failed=2,
        started_at=now - timedelta(seconds=50), heartbeat_at=now,
    )
    stale = services.create_job(JobType.PULL_SHOPIFY_CUSTOMERS, started_by=StartedBy.BEAT)
    BackgroundJob.objects.filter(pk=stale.pk).update(
        status=JobStatus.RUNNING, started_at=now - timedelta(minutes=10), heartbeat_at=now - timedelta(minutes=5)
    )
    failed = services.create_job(JobType.CUSTOMER_SYNC, started_by=StartedBy.COMMAND)
    BackgroundJob.objects.filter(pk=failed.pk).update(status=JobStatus.FAILED, error="AuthRejected: token refused")
    return running, stale, failed


def test_changelist_shows_progress_speed_eta_heartbeat_and_stale_flag(staff_client, jobs_on_board):
    running, stale, failed = jobs_on_board
    page = staff_client.get(reverse("admin:jobs_backgroundjob_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "250 / 1,000 (25.0%)" in html  # processed/total and %
    assert "248 ok / 2 failed" in html
    assert "5.0/s" in html  # 250 items in 50 s
    assert "2m 30s" in html  # ETA: 750 left at 5/s
    assert 'class="sb-badge sb-stale"' in html and ">Stale<" in html
    assert ">Failed<" in html and "staff" in html and "Schedule (beat)" in html
    assert 'name="sb-jobs-poll"' in html and "jobs/dashboard.js" in html


def test_changelist_filters_by_type_and_status(staff_client, jobs_on_board):
    url = reverse("admin:jobs_backgroundjob_changelist")
    running, stale, failed = jobs_on_board

    def rows(params):
        html = staff_client.get(url, params).content.decode()
        return {j.pk for j in (running, stale, failed) if f'data-job="{j.pk}" data-field="status"' in html}

    assert rows({"status__exact": "FAILED"}) == {failed.pk}
    assert rows({"type__exact": "PULL_NHANH_CUSTOMERS"}) == {running.pk}
    assert rows({"started_by__exact": "beat"}) == {stale.pk}
    assert rows({}) == {running.pk, stale.pk, failed.pk}


def test_detail_page_shows_metadata_and_error(staff_client, jobs_on_board):
    running, stale, failed = jobs_on_board
    html = staff_client.get(reverse("admin:jobs_backgroundjob_change", args=[running.pk])).content.decode()
    assert "&quot;pages&quot;: 3" in html
    html = staff_client.get(reverse("admin:jobs_backgroundjob_change", args=[failed.pk])).content.decode()
    assert "AuthRejected: token refused" in html


def test_json_endpoint_lists_jobs_for_staff(staff_client, jobs_on_board):
    running, stale, failed = jobs_on_board
    data = staff_client.get(reverse("jobs:job-list"), {"ids": f"{running.pk},{stale.pk}"}).json()
    by_id = {j["id"]: j for j in data["jobs"]}
    assert set(by_id) == {running.pk, stale.pk}
    assert by_id[running.pk]["percent"] == 25.0 and by_id[running.pk]["speed"] == 5.0
    assert by_id[running.pk]["display"]["progress"] == "250 / 1,000 (25.0%)"
    assert by_id[stale.pk]["is_stale"] is True
    assert data["latest_id"] == failed.pk
    assert staff_client.get(reverse("jobs:job-list"), {"status": "FAILED"}).json()["jobs"][0]["id"] == failed.pk
    assert staff_client.get(reverse("jobs:job-list"), {"ids": "x"}).status_code == 400
    detail = staff_client.get(reverse("jobs:job-detail", args=[failed.pk])).json()
    assert detail["error"] == "AuthRejected: token refused"


def test_anonymous_and_non_staff_are_refused(client, django_user_model, jobs_on_board):
    assert client.get(reverse("jobs:job-list")).status_code == 401
    page = client.get(reverse("admin:jobs_backgroundjob_changelist"))
    assert page.status_code == 302 and "/login/" in page["Location"]
    user = django_user_model.objects.create_user("clerk", password="clerk-pass-123")
    client.force_login(user)
    assert client.get(reverse("jobs:job-list")).status_code == 403
    user.is_staff = True
    user.save()
    assert client.get(reverse("jobs:job-list")).status_code == 403  # staff, but no view permission
    user.user_permissions.add(Permission.objects.get(codename="view_backgroundjob"))
    assert client.get(reverse("jobs:job-list")).status_code == 200


def test_actions_need_their_permissions(client, django_user_model, jobs_on_board):
    running, stale, failed = jobs_on_board
    user = django_user_model.objects.create_user("viewer", password="viewer-pass-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_backgroundjob"))
    client.force_login(user)
    url = reverse("admin:jobs_backgroundjob_changelist")
    html = client.get(url).content.decode()
    assert "cancel_jobs" not in html and "retry_jobs" not in html
    client.post(url, {"action": "cancel_jobs", "_selected_action": [running.pk]})
    assert not BackgroundJob.objects.get(pk=running.pk).cancel_requested
    user.user_permissions.add(Permission.objects.get(codename="cancel_backgroundjob"))
    client.post(url, {"action": "cancel_jobs", "_selected_action": [running.pk]})
    assert BackgroundJob.objects.get(pk=running.pk).cancel_requested


def test_actions_cancel_retry_and_fail_stale(staff_client, jobs_on_board):
    running, stale, failed = jobs_on_board
    url = reverse("admin:jobs_backgroundjob_changelist")
    staff_client.post(url, {"action": "fail_stale", "_selected_action": [running.pk, stale.pk]})
    assert BackgroundJob.objects.get(pk=stale.pk).status == JobStatus.FAILED
    assert BackgroundJob.objects.get(pk=running.pk).status == JobStatus.RUNNING
    staff_client.post(url, {"action": "retry_jobs", "_selected_action": [failed.pk]})
    retried = BackgroundJob.objects.get(retry_of=failed)
    assert retried.type == JobType.CUSTOMER_SYNC and retried.status == JobStatus.PENDING


def test_pull_progress_admin_lists_and_resets(staff_client):
    services.claim_pull(system="nhanh", kind="customers", filters=None, job_type=JobType.PULL_NHANH_CUSTOMERS,
                        params={})
    url = reverse("admin:jobs_pullprogress_changelist")
    html = staff_client.get(url).content.decode()
    assert "nhanh_customers" in html and "sb-running" in html
    pk = PullProgress.objects.get().pk
    staff_client.post(url, {"action": "reset", "_selected_action": [pk]})
    assert not PullProgress.objects.exists()


def test_management_commands_list_jobs_and_pulls(jobs_on_board, capsys):
    from django.core.management import call_command

    call_command("jobs")
    out = capsys.readouterr().out
    assert "PULL_NHANH_CUSTOMERS" in out and "250 / 1,000 (25.0%)" in out and "Stale" in out
    call_command("jobs", "--status", "FAILED")
    assert "token refused" in capsys.readouterr().out
    services.claim_pull(system="shopify", kind="customers", filters=None, job_type=JobType.PULL_SHOPIFY_CUSTOMERS,
                        params={})
    call_command("pull_progress")
    assert "shopify_customers: In Progress" in capsys.readouterr().out
    call_command("pull_progress", "--reset", "--system", "shopify", "--type", "customers")
    assert "Reset 1 pull(s)" in capsys.readouterr().out
    assert not PullProgress.objects.exists()


def test_a_pull_shows_its_path_and_shopify_s_stage(staff_user):
    from jobs.display import job_display

    job = services.create_job(JobType.PULL_SHOPIFY_CUSTOMERS, metadata={"path": "bulk", "stage": "RUNNING",
                                                                        "object_count": 1200})
    assert job_display(job)["progress"] == "0 processed · bulk · Shopify running (1,200 ready)"
    job.metadata = {"path": "paged"}
    assert job_display(job)["progress"].endswith("· paged")
