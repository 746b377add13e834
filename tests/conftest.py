"""Shared fixtures: the sandboxes served over real HTTP on loopback, and staff users."""

from __future__ import annotations

import contextlib
import os

import pytest

from integrations.sandbox.base import SandboxOptions
from integrations.sandbox.server import SandboxServer, build_apps


@contextlib.contextmanager
def running_sandbox(**options):
    """Serve the sandboxes in a background thread on a free port; yields the server."""
    only = options.pop("only", None)
    extra = options.pop("extra", None)
    apps = build_apps(SandboxOptions(**options), only, extra)
    server = SandboxServer(apps, "127.0.0.1", 0).start_in_thread()
    try:
        yield server
    finally:
        server.stop()


# The suite asserts behaviour in English: processes the tests start (workers, manage.py, pulls in a process)
# read LANGUAGE_CODE from here; this process's requests get it from the fixture below. tests/test_i18n.py
# switches to Vietnamese where language is the point.
os.environ["LANGUAGE_CODE"] = "en-us"


@pytest.fixture(autouse=True)
def _english(settings):
    """Pages, messages and job texts in English, as the tests were written (the shop's default is Vietnamese)."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en-us"
    with translation.override("en-us"):
        yield


@pytest.fixture(autouse=True)
def _close_postgres_rate_limit_pools():
    """The shared rate limiter's PostgreSQL store pools connections to the test database, which must be
    droppable when the run ends: close them after each test (the next use opens a new pool)."""
    yield
    from integrations.ratelimit import close_shared_limiters

    close_shared_limiters(backends=("postgres",))


@pytest.fixture
def sandbox_factory():
    """Start a sandbox with custom options: ``server = sandbox_factory(customers=500, seed=3)``."""
    stack = contextlib.ExitStack()

    def start(**options) -> SandboxServer:
        return stack.enter_context(running_sandbox(**options))

    with stack:
        yield start


@pytest.fixture
def sandbox(sandbox_factory) -> SandboxServer:
    """A small sandbox (300 customers, seed 7), rate limits on, fresh for each test."""
    return sandbox_factory(customers=300, seed=7, products=50)


@pytest.fixture
def loyalty_tiers(db):
    """The default tiers the data migration installs (transactional tests flush them between tests)."""
    from customers.models import DEFAULT_LOYALTY_TIERS, LoyaltyTier

    for name, min_total in DEFAULT_LOYALTY_TIERS:
        LoyaltyTier.objects.get_or_create(min_total=min_total, defaults={"name": name})


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_superuser("staff", "staff@example.com", "staff-pass-123")


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


class WorkerProcess:
    """A real ``celery worker`` process on its own queue, sharing the test database."""

    def __init__(self, queue: str, proc, log_path):
        self.queue, self.proc, self.log_path = queue, proc, log_path

    def kill(self, sig=None):
        import os
        import signal

        os.killpg(self.proc.pid, sig or signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def test_database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, tmp_path, settings):
    """Start worker processes on a private queue; tasks sent by the test go to that queue."""
    import os
    import subprocess
    import sys
    import time
    import uuid

    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    old_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    app.conf.task_always_eager = False
    workers: list[WorkerProcess] = []

    def start(**env_extra) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        env = {**os.environ, "DATABASE_URL": test_database_url(), "CELERY_TASK_DEFAULT_QUEUE": queue,
               "CELERY_TASK_ALWAYS_EAGER": "0", **{k: str(v) for k, v in env_extra.items()}}
        for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            env[key] = getattr(settings, key)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--concurrency=1",
             "--pool=prefork", "--loglevel=INFO", f"--hostname={queue}-{len(workers)}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        worker = WorkerProcess(queue, proc, log_path)
        workers.append(worker)
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)
        return worker

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.kill()
    app.conf.task_default_queue = old_queue


def wait_for(predicate, timeout=60.0, interval=0.1, message="condition"):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
