"""The live dashboard in a real headless browser (Debian's Chromium driven by Playwright)."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from customers.job_types import CustomerJobType as JobType
from jobs import services
from jobs.models import BackgroundJob, JobStatus, StartedBy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    # Playwright's sync API runs an event loop in this thread; the ORM calls here are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()



def test_dashboard_updates_live_without_reloading(live_server, browser, staff_user):
    from django.db import connections

    try:
        check_live_updates(live_server, browser, staff_user)
    finally:
        # ORM calls made while Playwright's event loop runs get a connection of their own context: close
        # it here, in that context, or it outlives the test and the test database cannot be dropped.
        connections.close_all()


def check_live_updates(live_server, browser, staff_user):
    from playwright.sync_api import expect

    now = timezone.now()
    job = services.create_job(JobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.USER, user=staff_user)
    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, total=100, processed=10,
                                                   successful=10, started_at=now - timedelta(seconds=5),
                                                   heartbeat_at=now)
    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/jobs/backgroundjob/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", "staff-pass-123")
    page.click("input[type=submit]")
    progress = page.locator(f'[data-job="{job.pk}"][data-field="progress"]')
    expect(progress).to_have_text("10 / 100 (10.0%)")
    page.evaluate("window.sbMarker = 42")  # survives only if the page is not reloaded

    BackgroundJob.objects.filter(pk=job.pk).update(processed=60, successful=58, failed=2, heartbeat_at=timezone.now())
    expect(progress).to_have_text("60 / 100 (60.0%)", timeout=10_000)
    expect(page.locator(f'[data-job="{job.pk}"][data-field="counts"]')).to_have_text("58 ok / 2 failed")
    bar = page.locator(f'[data-job="{job.pk}"][data-field="bar"] .sb-bar')
    assert bar.evaluate("el => el.style.width") == "60%"
    assert page.evaluate("window.sbMarker") == 42

    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED, processed=100, successful=98,
                                                   completed_at=timezone.now())
    status = page.locator(f'[data-job="{job.pk}"][data-field="status"]')
    expect(status).to_have_text("Completed", timeout=15_000)
    expect(status).to_have_class("sb-badge sb-completed")
    assert page.evaluate("window.sbMarker") == 42

    # A job started elsewhere appears on the list by itself.
    newer = services.create_job(JobType.CUSTOMER_SYNC, started_by=StartedBy.BEAT)
    expect(page.locator(f'[data-job="{newer.pk}"][data-field="status"]')).to_have_text("Pending", timeout=15_000)
    shots = Path(os.environ.get("SHOPBRIDGE_VAR_DIR", "var"))
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
