"""A ``--wait`` job that fails ends the command with one line: no traceback on the console (it stays in the log)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.models import BackgroundJob, JobStatus
from jobs.pull_specs import unregister_pull_spec
from tests import fakepull
from tests.conftest import test_database_url as database_url_for_processes

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent

# What manage.py does (ManagementUtility), with the test-only spec registered and a log file like production's.
FAILING_PULL = """
import logging, os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from tests import fakepull
fakepull.register()
logging.getLogger("jobs").addHandler(logging.FileHandler(sys.argv[1]))
from django.core.management import ManagementUtility
ManagementUtility(["manage.py", "pull", "fake", "things", "--mode", "all", "--wait", *sys.argv[2:]]).execute()
"""


@pytest.fixture
def fake_tables():
    fakepull.register()
    fakepull.create_tables()
    yield
    unregister_pull_spec(fakepull.SYSTEM, fakepull.KIND)


def run_failing_pull(tmp_path, *extra) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "shopbridge.log"
    env = {**os.environ, "DATABASE_URL": database_url_for_processes(), "FAKE_ROWS": "40", "FAKE_POISON": "5"}
    done = subprocess.run([sys.executable, "-c", FAILING_PULL, str(log), *extra], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    return done, log.read_text()


def test_a_failed_wait_job_prints_one_line_and_keeps_the_traceback_in_the_log(fake_tables, tmp_path):
    done, log = run_failing_pull(tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("CommandError:")]
    assert len(error_lines) == 1 and "failed" in error_lines[0]
    assert "Traceback (most recent call last)" in log  # the log file keeps it whole
    assert BackgroundJob.objects.get().status == JobStatus.FAILED


def test_verbosity_2_shows_the_traceback_on_the_console(fake_tables, tmp_path):
    done, _ = run_failing_pull(tmp_path, "--verbosity", "2")
    assert done.returncode == 1 and "Traceback (most recent call last)" in done.stderr
