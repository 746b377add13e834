"""The overview on the admin home in a real headless browser (Debian's Chromium driven by Playwright): it follows
a running job without a reload, and shows it failed when it fails."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from customers.job_types import CustomerJobType as JobType
from integrations.models import Connection, UpstreamStatus
from jobs import services
from jobs.models import BackgroundJob, JobStatus, StartedBy
from tests.test_dashboard_browser import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_overview_follows_a_running_job_without_reloading(live_server, browser, staff_user):  # noqa: F811
    from django.db import connections

    try:
        check_overview(live_server, browser, staff_user)
    finally:
        connections.close_all()  # see test_dashboard_browser: the connection of Playwright's context


def check_overview(live_server, browser, staff_user):  # noqa: F811
    from playwright.sync_api import expect

    now = timezone.now()
    Connection.objects.create(system="nhanh", base_url="https://pos.open.nhanh.vn")
    job = services.create_job(JobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.USER, user=staff_user)
    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, total=100, processed=10,
                                                   successful=10, started_at=now - timedelta(seconds=5),
                                                   heartbeat_at=now)
    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    overview = page.locator("#sb-overview")
    progress = overview.locator(f'[data-job="{job.pk}"][data-field="progress"]')
    expect(progress).to_have_text("10 / 100 (10.0%)")
    expect(overview.locator('tr[data-key="nhanh"] [data-field="conn-status"]')).to_have_text("No call recorded yet")
    page.evaluate("window.sbMarker = 42")  # survives only if the page is not reloaded

    BackgroundJob.objects.filter(pk=job.pk).update(processed=60, successful=60, heartbeat_at=timezone.now())
    UpstreamStatus.objects.create(key="nhanh", ok=False, failing_since=timezone.now(),
                                  last_error="nhanh: server error HTTP 502")
    expect(progress).to_have_text("60 / 100 (60.0%)", timeout=10_000)
    expect(overview.locator('tr[data-key="nhanh"] [data-field="conn-status"]')).to_have_text("Failing")
    expect(overview).to_contain_text("nhanh: server error HTTP 502")
    assert page.evaluate("window.sbMarker") == 42

    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="Nhanh kept answering 502",
                                                   completed_at=timezone.now())
    failed_row = overview.locator(f'tr[data-job-row="{job.pk}"]')
    expect(failed_row).to_contain_text("Nhanh kept answering 502", timeout=15_000)
    expect(overview.locator("#sb-ov-jobs")).to_contain_text("Nothing is running.")
    assert page.evaluate("window.sbMarker") == 42
    assert int(page.evaluate("document.getElementById('sb-overview').dataset.polls")) >= 2
    shots = Path(os.environ.get("SHOPBRIDGE_VAR_DIR", "var"))
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
