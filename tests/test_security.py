"""Staff act within their permissions; the JSON API answers bad input with 400; commands fail in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from config.schedules import SCHEDULES, install_schedules
from customers.job_types import CustomerJobType
from jobs import services
from jobs.models import BackgroundJob, JobStatus, PullMark, PullProgress, PullStatus, StartedBy

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_eager_tasks(settings):
    # Started jobs go to the broker (nobody runs them here): what matters is whether they were started.
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False


def staff(django_user_model, *perms: str, name: str = "clerk"):
    user = django_user_model.objects.create_user(name, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def failed_job(job_type, error="boom"):
    job = services.create_job(job_type, started_by=StartedBy.USER,
                              params={"system": "nhanh", "kind": "customers", "mode": "all", "filters": {}})
    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error=error)
    return BackgroundJob.objects.get(pk=job.pk)


# --- schedules (django-celery-beat's admin, re-registered in hub/admin.py) ----------------------------------
PERIODIC_URL = "/admin/django_celery_beat/periodictask/"


def action(client, name, *pks):
    return client.post(PERIODIC_URL, {"action": name, "_selected_action": list(pks)}, follow=True)


def test_every_schedule_declares_the_permissions_of_what_it_starts():
    assert all(s.permissions for s in SCHEDULES), [s.name for s in SCHEDULES if not s.permissions]
    known = {f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")}
    assert {p for s in SCHEDULES for p in s.permissions} <= known


def test_view_only_staff_can_neither_enable_nor_run_schedules(django_user_model):
    install_schedules()
    daily = PeriodicTask.objects.get(name="Customers: daily workflow")
    client = logged_in(staff(django_user_model, "django_celery_beat.view_periodictask"))
    html = client.get(PERIODIC_URL).content.decode()
    assert "enable_tasks" not in html and "toggle_tasks" not in html
    for name in ("enable_tasks", "toggle_tasks"):
        action(client, name, daily.pk)
        assert not PeriodicTask.objects.get(pk=daily.pk).enabled
    page = action(client, "run_tasks", daily.pk).content.decode()
    assert "Not run: you lack the permissions" in page and "successfully run" not in page


def test_enabling_needs_the_change_permission(django_user_model):
    install_schedules()
    daily = PeriodicTask.objects.get(name="Customers: daily workflow")
    client = logged_in(staff(django_user_model, "django_celery_beat.view_periodictask",
                             "django_celery_beat.change_periodictask"))
    action(client, "enable_tasks", daily.pk)
    assert PeriodicTask.objects.get(pk=daily.pk).enabled
    action(client, "disable_tasks", daily.pk)
    assert not PeriodicTask.objects.get(pk=daily.pk).enabled
    # Changing a schedule does not let them change what it runs.
    page = client.get(f"{PERIODIC_URL}{daily.pk}/change/").content.decode()
    assert 'name="task"' not in page and 'name="regtask"' not in page and 'name="kwargs"' not in page
    assert client.get(f"{PERIODIC_URL}add/").status_code == 403
    # They can still re-time it and switch it on; a task name smuggled into the form is ignored.
    form = {"name": daily.name, "enabled": "on", "description": "re-timed", "crontab": daily.crontab_id,
            "expire_seconds": 3600, "task": "jobs.run_job", "regtask": "jobs.run_job", "args": "[1]",
            "start_time_0": "", "start_time_1": "", "last_run_at_0": "", "last_run_at_1": "", "priority": ""}
    r = client.post(f"{PERIODIC_URL}{daily.pk}/change/", form)
    assert r.status_code == 302, r.content.decode()[-3000:]
    daily.refresh_from_db()
    assert daily.enabled and daily.description == "re-timed"
    assert daily.task == "customers.workflow_daily" and daily.args == "[]"


def test_running_a_schedule_now_needs_the_permissions_of_the_jobs_it_starts(django_user_model):
    install_schedules()
    daily = PeriodicTask.objects.get(name="Customers: daily workflow")
    loyalty = PeriodicTask.objects.get(name="Customers: loyalty auto-sync")
    client = logged_in(staff(django_user_model, "django_celery_beat.view_periodictask", "jobs.run_pull"))
    assert "Not run" in action(client, "run_tasks", daily.pk).content.decode()  # lacks auto-match and sync
    assert "Not run" in action(client, "run_tasks", loyalty.pk).content.decode()
    client = logged_in(staff(django_user_model, "django_celery_beat.view_periodictask",
                             "customers.sync_to_shopify", name="syncer"))
    assert "1 task was successfully run" in action(client, "run_tasks", loyalty.pk).content.decode()
    # One refused task in the selection: none of them runs.
    page = action(client, "run_tasks", loyalty.pk, daily.pk).content.decode()
    assert "Not run" in page and "Customers: daily workflow" in page and "successfully run" not in page


def test_a_task_no_schedule_declares_is_run_by_superusers_only(django_user_model, admin_client):
    from django_celery_beat.models import IntervalSchedule

    every = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    manual = PeriodicTask.objects.create(name="hand-made", task="jobs.run_job", args="[0]", interval=every)
    everything = [f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.filter(
        content_type__app_label__in=["jobs", "customers", "integrations", "django_celery_beat"])]
    client = logged_in(staff(django_user_model, *everything))
    assert "Not run" in action(client, "run_tasks", manual.pk).content.decode()
    assert "successfully run" in action(admin_client, "run_tasks", manual.pk).content.decode()


# --- retry, delete ----------------------------------------------------------------------------------------
JOBS_URL = "/admin/jobs/backgroundjob/"


def test_retry_needs_the_permission_of_the_jobs_kind(django_user_model):
    pull = failed_job(CustomerJobType.PULL_NHANH_CUSTOMERS)
    match = failed_job(CustomerJobType.AUTO_MATCH_CUSTOMERS)
    client = logged_in(staff(django_user_model, "jobs.view_backgroundjob", "jobs.retry_backgroundjob"))
    page = client.post(JOBS_URL, {"action": "retry_jobs", "_selected_action": [pull.pk, match.pk]},
                       follow=True).content.decode()
    assert "you may not start" in page
    assert BackgroundJob.objects.count() == 2 and not PullProgress.objects.exists()
    client = logged_in(staff(django_user_model, "jobs.view_backgroundjob", "jobs.retry_backgroundjob",
                             "customers.run_automatch", name="matcher"))
    client.post(JOBS_URL, {"action": "retry_jobs", "_selected_action": [pull.pk, match.pk]})
    assert list(BackgroundJob.objects.filter(retry_of__isnull=False).values_list("retry_of", flat=True)) == [match.pk]


def running_job():
    job = services.create_job(CustomerJobType.PULL_NHANH_CUSTOMERS, started_by=StartedBy.USER)
    BackgroundJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    return job


def test_deleting_a_running_job_needs_the_cancel_permission(django_user_model):
    running, done = running_job(), failed_job(CustomerJobType.AUTO_MATCH_CUSTOMERS)
    client = logged_in(staff(django_user_model, "jobs.view_backgroundjob", "jobs.delete_backgroundjob"))
    assert client.post(f"{JOBS_URL}{running.pk}/delete/", {"post": "yes"}).status_code == 403
    r = client.post(JOBS_URL, {"action": "delete_selected", "_selected_action": [running.pk, done.pk], "post": "yes"})
    assert r.status_code == 403 and BackgroundJob.objects.count() == 2
    # Finished jobs are history: the delete permission is enough for them.
    client.post(JOBS_URL, {"action": "delete_selected", "_selected_action": [done.pk], "post": "yes"})
    assert not BackgroundJob.objects.filter(pk=done.pk).exists()
    client = logged_in(staff(django_user_model, "jobs.view_backgroundjob", "jobs.delete_backgroundjob",
                             "jobs.cancel_backgroundjob", name="canceller"))
    client.post(f"{JOBS_URL}{running.pk}/delete/", {"post": "yes"})
    assert not BackgroundJob.objects.exists()


def test_deleting_pull_progress_or_marks_is_a_reset_and_needs_reset_pull(django_user_model):
    progress = PullProgress.objects.create(progress_id="nhanh_customers", system="nhanh", kind="customers",
                                           status=PullStatus.RUNNING, checkpoint={"page": 7})
    mark = PullMark.objects.create(key="nhanh_customers_new", value={"until": "2026-11-01T00:00:00Z"})
    perms = ("jobs.view_pullprogress", "jobs.delete_pullprogress", "jobs.view_pullmark", "jobs.delete_pullmark")
    client = logged_in(staff(django_user_model, *perms))
    url = "/admin/jobs/pullprogress/"
    assert client.post(f"{url}{progress.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(url, {"action": "delete_selected", "_selected_action": [progress.pk], "post": "yes"})
    assert client.post(f"/admin/jobs/pullmark/{mark.pk}/delete/", {"post": "yes"}).status_code == 403
    assert PullProgress.objects.exists() and PullMark.objects.exists()
    client = logged_in(staff(django_user_model, *perms, "jobs.reset_pull", name="resetter"))
    client.post(url, {"action": "delete_selected", "_selected_action": [progress.pk], "post": "yes"})
    client.post(f"/admin/jobs/pullmark/{mark.pk}/delete/", {"post": "yes"})
    assert not PullProgress.objects.exists() and not PullMark.objects.exists()


# --- permissions staff see are the ones checked; roles --------------------------------------------------
OUR_APPS = ("jobs", "integrations", "customers", "products", "ads", "pancake", "hub")


def test_every_custom_permission_of_ours_is_checked_somewhere():
    from django.apps import apps

    source = "\n".join(p.read_text() for app in OUR_APPS + ("config",) for p in (ROOT / app).rglob("*.py")
                       if "migrations" not in p.parts)
    custom = [(m._meta.app_label, codename) for app in OUR_APPS for m in apps.get_app_config(app).get_models()
              for codename, _ in m._meta.permissions]
    assert custom, "no custom permissions found"
    unchecked = [f"{a}.{c}" for a, c in custom if f'"{a}.{c}"' not in source]
    assert not unchecked, f"declared but never checked: {unchecked}"
    assert not Permission.objects.filter(codename="run_customer_pull").exists()


def perms_of(group: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}"
            for p in Group.objects.get(name=group).permissions.select_related("content_type")}


def test_roles_are_created_with_permissions_by_rule():
    viewer, operator, manager = perms_of("viewer"), perms_of("operator"), perms_of("manager")
    assert {"jobs.view_backgroundjob", "customers.view_nhanhcustomer", "django_celery_beat.view_periodictask"} \
        <= viewer
    assert not any(p.split(".")[1].startswith(("run_", "sync_", "cancel_", "change_", "delete_")) for p in viewer)
    assert viewer < operator
    assert {"jobs.run_pull", "customers.run_automatch", "customers.sync_to_shopify", "jobs.cancel_backgroundjob",
            "jobs.retry_backgroundjob"} <= operator
    assert not {"jobs.force_restart_pull", "jobs.reset_pull", "integrations.change_connection",
                "django_celery_beat.change_periodictask"} & operator
    assert operator < manager
    assert {"jobs.force_restart_pull", "jobs.reset_pull", "integrations.change_connection",
            "django_celery_beat.change_periodictask", "customers.change_loyaltytier"} <= manager
    assert not any(p.startswith(("auth.", "sessions.", "contenttypes.", "admin.")) for p in manager)


def test_permissions_added_later_join_the_roles_by_rule():
    from django.contrib.contenttypes.models import ContentType

    from hub.roles import sync_roles_after_migrate

    ct = ContentType.objects.create(app_label="products", model="product")
    for codename in ("view_product", "sync_stock", "delete_product"):
        Permission.objects.create(content_type=ct, codename=codename, name=codename)
    sync_roles_after_migrate(using="default")
    assert "products.view_product" in perms_of("viewer")
    assert {"products.view_product", "products.sync_stock"} <= perms_of("operator")
    assert "products.delete_product" not in perms_of("operator")
    assert {"products.view_product", "products.sync_stock", "products.delete_product"} <= perms_of("manager")


def test_an_operator_runs_pulls_but_cannot_force_restart_or_edit_connections(django_user_model):
    user = staff(django_user_model)
    user.groups.add(Group.objects.get(name="operator"))
    client = logged_in(user)
    page = client.get(reverse("admin:customers_nhanhcustomer_pull"))
    assert page.status_code == 200 and "force_restart" not in page.content.decode()
    assert client.get("/admin/integrations/connection/add/").status_code == 403


# --- job errors: the message for staff, the traceback for superusers --------------------------------------
TRACEBACK = ("HTTPError: 500 from upstream\n\nTraceback (most recent call last):\n"
             '  File "/srv/shopbridge/integrations/http.py", line 120, in send\n    raise HTTPError\n')


def test_api_gives_staff_the_error_message_not_the_traceback(django_user_model, admin_client):
    job = failed_job(CustomerJobType.AUTO_MATCH_CUSTOMERS, error=TRACEBACK)
    client = logged_in(staff(django_user_model, "jobs.view_backgroundjob"))
    for c in (client, admin_client):
        assert c.get(f"/api/jobs/{job.pk}/").json()["error"] == "HTTPError: 500 from upstream"
        listed = c.get("/api/jobs/", {"ids": str(job.pk)}).json()["jobs"][0]
        assert "Traceback" not in json.dumps(listed) and "/srv/" not in json.dumps(listed)
    page = client.get(f"{JOBS_URL}{job.pk}/change/").content.decode()
    assert "HTTPError: 500 from upstream" in page and "Traceback" not in page and "/srv/shopbridge" not in page
    page = admin_client.get(f"{JOBS_URL}{job.pk}/change/").content.decode()
    assert "Traceback (most recent call last)" in page and "/srv/shopbridge/integrations/http.py" in page


# --- bad input on the JSON API ----------------------------------------------------------------------------
PULLS = "/api/pulls/customers/"
NESTED = "[" * 100_000 + "]" * 100_000

BAD_BODIES = {
    "filters string": {"system": "nhanh", "mode": "filtered", "filters": "type=1"},
    "filters list": {"system": "nhanh", "mode": "filtered", "filters": [1]},
    "filters number": {"system": "nhanh", "mode": "filtered", "filters": 5},
    "type list": {"system": "nhanh", "mode": "filtered", "filters": {"type": [1]}},
    "type object": {"system": "nhanh", "mode": "filtered", "filters": {"type": {"a": 1}}},
    "type huge": {"system": "nhanh", "mode": "filtered", "filters": {"type": 10**30}},
    "type 2^63": {"system": "nhanh", "mode": "filtered", "filters": {"type": 2**63}},
    "query number": {"system": "shopify", "query": 5},
    "query list": {"system": "shopify", "query": ["state:ENABLED"]},
    "query object": {"system": "shopify", "query": {"q": 1}},
    "query too long": {"system": "shopify", "query": "x" * 5000},
    "force_restart string": {"system": "nhanh", "mode": "all", "force_restart": "false"},
    "force_restart number": {"system": "nhanh", "mode": "all", "force_restart": 1},
    "system number": {"system": 5},
    "system list": {"system": ["nhanh"]},
    "system odd characters": {"system": "nhanh'; --"},
    "mode object": {"system": "nhanh", "mode": {"all": 1}},
    "unknown key": {"system": "nhanh", "mode": "all", "sneaky": 1},
    "too many filters": {"system": "nhanh", "filters": {f"f{i}": 1 for i in range(50)}},
}
BAD_RAW = {
    "lone surrogate in query": '{"system": "shopify", "query": "\\ud800"}',
    "lone surrogate in a filter key": '{"system": "nhanh", "filters": {"\\udc00": 1}}',
    "NUL in query": '{"system": "shopify", "query": "state:\\u0000ENABLED"}',
    "nested 100,000 deep": NESTED,
    "nested object": '{"system": "nhanh", "filters": {"type": {"a": {"b": {"c": {"d": 1}}}}}}',
    "not an object": "[1, 2]",
    "not JSON": "{system: nhanh}",
    "not UTF-8": b'{"system": "\xff"}',
    "too large": json.dumps({"system": "shopify", "query": "x" * 100_000}),
}


def assert_nothing_stored():
    assert not BackgroundJob.objects.exists() and not PullProgress.objects.exists()


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_are_a_400_in_json_and_store_nothing(admin_client, body):
    r = admin_client.post(PULLS, body, content_type="application/json")
    assert r.status_code == 400 and r["Content-Type"] == "application/json" and r.json()["error"]
    assert_nothing_stored()


@pytest.mark.parametrize("raw", BAD_RAW.values(), ids=BAD_RAW.keys())
def test_bad_raw_bodies_are_a_400_in_json_and_store_nothing(admin_client, raw):
    r = admin_client.post(PULLS, raw, content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]
    assert_nothing_stored()


def test_a_string_false_never_force_restarts_a_running_pull(admin_client):
    from jobs.pull_specs import start_pull

    started = start_pull("nhanh", "customers", "all")
    token = PullProgress.objects.get(progress_id=started.progress_id).run_token
    r = admin_client.post(PULLS, {"system": "nhanh", "mode": "all", "force_restart": "false"},
                          content_type="application/json")
    assert r.status_code == 400 and "force_restart" in r.json()["error"]
    assert PullProgress.objects.get(progress_id=started.progress_id).run_token == token
    assert BackgroundJob.objects.count() == 1
    r = admin_client.post(PULLS, {"system": "nhanh", "mode": "all", "force_restart": False},
                          content_type="application/json")
    assert r.status_code == 409  # a JSON false is false


def test_a_good_request_still_starts_a_pull(admin_client):
    r = admin_client.post(PULLS, {"system": "nhanh", "mode": "filtered", "filters": {"type": 1}},
                          content_type="application/json")
    assert r.status_code == 202 and r.json()["progress_id"]
    r = admin_client.post(PULLS, {"system": "shopify", "query": "tag:vip", "force_restart": False},
                          content_type="application/json")
    assert r.status_code == 202


@pytest.mark.parametrize("ids", [str(2**63), "9" * 40, "1," + "9" * 30, "-1", "1e3", "١٢"])
def test_job_list_refuses_ids_out_of_range(admin_client, ids):
    r = admin_client.get("/api/jobs/", {"ids": ids})
    assert r.status_code == 400 and "ids" in r.json()["error"]


def test_job_detail_of_a_huge_id_is_a_404(admin_client):
    assert admin_client.get(f"/api/jobs/{10**30}/").status_code == 404


def test_csrf_failures_on_the_api_answer_json_and_pages_keep_djangos(django_user_model):
    user = django_user_model.objects.create_superuser("boss", "b@example.com", None)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    r = browser.post(PULLS, {"system": "nhanh", "mode": "all"}, content_type="application/json")
    assert r.status_code == 403 and r["Content-Type"] == "application/json" and "CSRF" in r.json()["error"]
    assert_nothing_stored()
    r = browser.post("/admin/customers/customermapping/automatch/")
    assert r.status_code == 403 and r["Content-Type"].startswith("text/html")
    assert not BackgroundJob.objects.exists()


# --- commands ---------------------------------------------------------------------------------------------
def test_sync_of_unknown_mapping_ids_is_an_error_listing_them():
    with pytest.raises(CommandError, match="no customer mapping with id 888888, 999999"):
        call_command("sync_shopify", "customers", "--ids", "999999", "888888", "--wait")
    assert not BackgroundJob.objects.exists()


@pytest.mark.parametrize("argv", [
    ["sync_shopify", "customers", "--ids", str(10**30)],
    ["sync_shopify", "customers", "--ids", "0"],
    ["jobs", "--limit", str(10**23)],
    ["sandbox", "--port", "99999"],
    ["sandbox", "--host", "0.0.0.0"],
    ["sandbox", "--host", "example.com"],
    ["sandbox", "--customers", "-5"],
    ["sandbox", "--error-rate", "2"],
])
def test_out_of_range_arguments_are_refused(argv):
    with pytest.raises(CommandError):
        call_command(*argv)
    assert not BackgroundJob.objects.exists()


def run_manage(*argv, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("argv", [
    ["jobs", "--limit", str(10**23)], ["sandbox", "--port", "99999"], ["sandbox", "--host", "0.0.0.0"],
    ["sandbox", "--customers", "-5"],
])
def test_refused_arguments_print_one_line_and_exit_non_zero(argv):
    done = run_manage(*argv)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if ": error:" in line]) == 1


def test_demo_refuses_a_database_with_real_connections_unless_forced(django_user_model):
    from integrations.models import Connection

    Connection.objects.create(system="nhanh", base_url="https://pos.open.nhanh.vn", access_token="real-token")
    with pytest.raises(CommandError, match=r"real connections \(nhanh → pos.open.nhanh.vn\).*--force"):
        call_command("demo")
    assert Connection.objects.get(system="nhanh").base_url == "https://pos.open.nhanh.vn"
    assert not django_user_model.objects.exists()
    call_command("demo", "--force")
    assert Connection.objects.get(system="nhanh").is_sandbox
    call_command("demo")  # now every connection is the sandbox: no refusal


# --- deployment -------------------------------------------------------------------------------------------
def production_env(tmp_path) -> dict:
    """The README's production environment (with a real-looking secret key)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"export (DATABASE_URL=.*?)\n(?=python manage.py migrate)", readme, re.S).group(1)
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", block.replace("\\\n", " ")))
    assert env["HTTPS"] == "1" and "ALLOWED_HOSTS" in env
    env["SECRET_KEY"] = "x7" * 30 + "-production-key"
    env["SHOPBRIDGE_VAR_DIR"] = str(tmp_path)
    return env


def test_check_deploy_passes_with_the_readme_production_settings(tmp_path):
    done = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=production_env(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout


def test_https_settings_turn_on_hsts_redirect_and_secure_cookies(tmp_path):
    code = ("from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
            "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)")
    env = {**os.environ, **production_env(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    assert done.stdout.split() == ["True", "True", "True", "True"], done.stderr
