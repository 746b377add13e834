"""The permission matrix: every admin action (ours and the third-party ones on our site), every admin page and
button, every JSON endpoint, walked with a user per role. Anonymous and non-staff users are refused everywhere;
the viewer / operator / manager groups (hub/roles.py) get exactly what the README says; CSRF holds on every POST.

A new action, button, page or endpoint fails ``test_the_matrix_covers_*`` until it is given its row here.
Management commands run with the rights of whoever has a shell on the server (they have no Django user): the
matrix lists them so a new entry point is a conscious decision.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import get_commands
from django.test import Client, RequestFactory
from django.urls import reverse

from config.schedules import install_schedules
from customers.job_types import CustomerJobType
from jobs import services
from jobs.models import StartedBy

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "non_staff", "viewer", "operator", "manager", "superuser")
VIEWER_UP = {"viewer", "operator", "manager", "superuser"}
OPERATOR_UP = {"operator", "manager", "superuser"}
MANAGER_UP = {"manager", "superuser"}
SUPERUSER = {"superuser"}

OUR_APPS = {"jobs", "integrations", "customers", "products", "ads", "pancake", "hub", "django_celery_beat"}

# (model label, action) → roles that may run it.
ACTIONS = {
    ("jobs.backgroundjob", "cancel_jobs"): OPERATOR_UP,
    ("jobs.backgroundjob", "retry_jobs"): OPERATOR_UP,  # and the job kind's own permission (test_security)
    ("jobs.backgroundjob", "fail_stale"): OPERATOR_UP,
    ("jobs.backgroundjob", "delete_selected"): MANAGER_UP,  # running ones: with cancel (test_security)
    ("jobs.pullprogress", "reset"): MANAGER_UP,
    ("jobs.pullprogress", "force_restart"): MANAGER_UP,
    ("jobs.pullprogress", "delete_selected"): MANAGER_UP,
    ("jobs.pullmark", "delete_selected"): MANAGER_UP,
    ("integrations.connection", "delete_selected"): MANAGER_UP,
    ("customers.nhanhcustomer", "delete_selected"): SUPERUSER,
    ("customers.shopifycustomer", "delete_selected"): SUPERUSER,
    ("customers.customermapping", "sync_selected"): OPERATOR_UP,
    ("customers.customermapping", "unmatch_selected"): MANAGER_UP,
    ("customers.customermapping", "delete_selected"): MANAGER_UP,
    ("customers.ambiguousmatch", "delete_selected"): MANAGER_UP,
    ("customers.loyaltytier", "delete_selected"): MANAGER_UP,
    ("django_celery_beat.periodictask", "enable_tasks"): MANAGER_UP,
    ("django_celery_beat.periodictask", "disable_tasks"): MANAGER_UP,
    ("django_celery_beat.periodictask", "toggle_tasks"): MANAGER_UP,
    # Offered to viewers, but what it runs is checked per task (see test_run_selected_tasks_by_role).
    ("django_celery_beat.periodictask", "run_tasks"): VIEWER_UP,
    ("django_celery_beat.periodictask", "delete_selected"): MANAGER_UP,
    ("django_celery_beat.clockedschedule", "delete_selected"): MANAGER_UP,
    ("django_celery_beat.crontabschedule", "delete_selected"): MANAGER_UP,
    ("django_celery_beat.solarschedule", "delete_selected"): MANAGER_UP,
    ("django_celery_beat.intervalschedule", "delete_selected"): MANAGER_UP,
    ("integrations.connection", "test_connection"): MANAGER_UP,
    ("pancake.pancakepage", "delete_selected"): MANAGER_UP,
    ("pancake.pancakecustomer", "delete_selected"): MANAGER_UP,
    ("pancake.pancakeambiguouslink", "delete_selected"): MANAGER_UP,
    ("ads.shop", "enqueue_now"): OPERATOR_UP,
    ("ads.shop", "retry_failed"): OPERATOR_UP,
    ("ads.shop", "reset"): MANAGER_UP,
    ("ads.shop", "delete_selected"): MANAGER_UP,
    ("ads.campaign", "delete_selected"): MANAGER_UP,
    ("ads.campaigndailyperformance", "delete_selected"): MANAGER_UP,
    ("ads.syncqueue", "delete_selected"): MANAGER_UP,
    ("ads.budgetschedule", "delete_selected"): MANAGER_UP,
    ("ads.budgetlog", "delete_selected"): MANAGER_UP,
    ("products.nhanhproduct", "delete_selected"): SUPERUSER,
    ("products.shopifyproduct", "delete_selected"): SUPERUSER,
    ("products.shopifyvariant", "delete_selected"): SUPERUSER,
    ("products.shopifylocation", "delete_selected"): SUPERUSER,
    ("products.nhanhdepot", "delete_selected"): MANAGER_UP,
    ("products.productmapping", "unmatch_selected"): MANAGER_UP,
    ("products.productmapping", "sync_selected"): OPERATOR_UP,
    ("products.productmapping", "delete_selected"): MANAGER_UP,
    ("products.ambiguoussku", "delete_selected"): MANAGER_UP,
    ("auth.group", "delete_selected"): SUPERUSER,
    ("auth.user", "delete_selected"): SUPERUSER,
}

# Custom admin URLs (buttons and pages): name → (method, args, roles).
BUTTONS = {
    "customers_nhanhcustomer_pull": ("get", (), OPERATOR_UP),
    "customers_shopifycustomer_pull": ("get", (), OPERATOR_UP),
    "jobs_pullprogress_start": ("get", ("nhanh", "customers"), OPERATOR_UP),
    "customers_customermapping_automatch": ("post", (), OPERATOR_UP),
    "customers_customermapping_dry_run": ("post", (), OPERATOR_UP),
    "customers_customermapping_sync_all": ("post", (), OPERATOR_UP),
    "customers_customermapping_retry_failed": ("post", (), OPERATOR_UP),
    "customers_customermapping_match": ("get", (), MANAGER_UP),
    "pancake_pancakepage_pull": ("get", (), OPERATOR_UP),
    "products_nhanhproduct_pull": ("get", (), OPERATOR_UP),
    "products_shopifyproduct_pull": ("get", (), OPERATOR_UP),
    "products_productmapping_automatch": ("post", (), OPERATOR_UP),
    "products_productmapping_dry_run": ("post", (), OPERATOR_UP),
    "products_productmapping_match": ("get", (), MANAGER_UP),
    "products_productmapping_sync_all": ("post", (), OPERATOR_UP),
    "products_productmapping_retry_failed": ("post", (), OPERATOR_UP),
    "pancake_pancakecustomer_link": ("post", (), OPERATOR_UP),
}
# Export pages of the lists (hub/export.py): view + export permission (operators and managers).
BUTTONS.update({f"{label.lower().replace('.', '_')}_export": ("get", (), OPERATOR_UP)
                for label in ("jobs.BackgroundJob", "customers.NhanhCustomer", "customers.ShopifyCustomer",
                              "pancake.PancakeCustomer", "customers.CustomerMapping", "customers.AmbiguousMatch",
                              "products.NhanhProduct", "products.ShopifyProduct", "products.ShopifyVariant",
                              "products.ProductMapping", "products.AmbiguousSku")})

# JSON endpoints: name → (method, args, body, roles). Refusals are JSON 401 (anonymous) / 403.
ENDPOINTS = {
    "job-list": ("get", (), None, VIEWER_UP),
    "job-detail": ("get", ("JOB",), None, VIEWER_UP),
    "start-pull": ("post", ("customers",), {"system": "shopify", "mode": "all"}, OPERATOR_UP),
}

COMMANDS = {"ads", "automatch", "demo", "install_schedules", "jobs", "pull", "pull_progress", "sandbox", "sync_shopify"}


@pytest.fixture(autouse=True)
def no_eager_tasks(settings):
    from config.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False


@pytest.fixture
def users(django_user_model):
    made = {"anonymous": None,
            "non_staff": django_user_model.objects.create_user("shopper"),
            "superuser": django_user_model.objects.create_superuser("boss", "boss@example.com", None)}
    for role in ("viewer", "operator", "manager"):
        user = django_user_model.objects.create_user(role, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        made[role] = user
    return made


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def refused(response) -> bool:
    if response.status_code in (401, 403):
        return True
    return response.status_code == 302 and "/login/" in response["Location"]


def registered():
    return [(m._meta.label_lower, ma) for m, ma in admin.site._registry.items()]


def custom_url_names():
    return {u.name for _, ma in registered() for u in ma.get_urls()
            if u.name and not u.name.endswith(("_changelist", "_add", "_history", "_delete", "_change"))}


# --- the matrix covers everything -----------------------------------------------------------------------
def test_the_matrix_covers_every_admin_action():
    found = {(label, name) for label, ma in registered()
             for name in list(ma.actions or []) + (["delete_selected"] if ma.actions is not None else [])}
    assert found == set(ACTIONS)


def test_the_matrix_covers_every_button_and_endpoint_and_command():
    assert custom_url_names() == set(BUTTONS)
    from jobs.urls import urlpatterns

    assert {p.name for p in urlpatterns} == set(ENDPOINTS)
    ours = {name for name, app in get_commands().items() if app in OUR_APPS}
    assert ours == COMMANDS


# --- admin actions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("label,action", sorted(ACTIONS), ids=[f"{a}:{b}" for a, b in sorted(ACTIONS)])
def test_admin_actions_by_role(users, label, action):
    model_admin = next(ma for lbl, ma in registered() if lbl == label)
    factory = RequestFactory()
    for role in ROLES:
        user = users[role]
        if user is None or not user.is_staff:
            # The admin site itself refuses them before any action is looked at.
            url = reverse(f"admin:{label.replace('.', '_')}_changelist")
            assert refused(client_for(user).post(url, {"action": action, "_selected_action": [1]})), role
            continue
        request = factory.get("/admin/")
        request.user = user
        offered = action in model_admin.get_actions(request)
        assert offered == (role in ACTIONS[(label, action)]), f"{role} {'may' if offered else 'may not'} {action}"


def test_run_selected_tasks_by_role(users):
    from django_celery_beat.models import PeriodicTask

    install_schedules()
    loyalty = PeriodicTask.objects.get(name="Customers: loyalty auto-sync")
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    for role in ROLES:
        response = client_for(users[role]).post(url, {"action": "run_tasks", "_selected_action": [loyalty.pk]},
                                                follow=users[role] is not None and users[role].is_staff)
        ran = not refused(response) and "successfully run" in response.content.decode()
        assert ran == (role in OPERATOR_UP), role


# --- pages ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", sorted(label for label, _ in registered()))
def test_changelists_by_role(users, label):
    url = reverse(f"admin:{label.replace('.', '_')}_changelist")
    allowed = VIEWER_UP if label.split(".")[0] in OUR_APPS else SUPERUSER
    for role in ROLES:
        response = client_for(users[role]).get(url)
        assert (response.status_code == 200) == (role in allowed), (role, response.status_code)
        if role not in allowed:
            assert refused(response), role


@pytest.mark.parametrize("name", sorted(BUTTONS))
def test_buttons_and_pages_by_role(users, name):
    method, args, allowed = BUTTONS[name]
    url = reverse(f"admin:{name}", args=args)
    for role in ROLES:
        response = getattr(client_for(users[role]), method)(url)
        assert refused(response) == (role not in allowed), (role, response.status_code)
        if role in allowed:
            assert response.status_code in (200, 302), (role, response.status_code)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_json_endpoints_by_role(users, name):
    method, args, body, allowed = ENDPOINTS[name]
    job = services.create_job(CustomerJobType.AUTO_MATCH_CUSTOMERS, started_by=StartedBy.SYSTEM)
    url = reverse(f"jobs:{name}", args=[job.pk if a == "JOB" else a for a in args])
    for role in ROLES:
        client = client_for(users[role])
        response = client.get(url) if method == "get" else client.post(url, body, content_type="application/json")
        assert response["Content-Type"] == "application/json", role
        assert refused(response) == (role not in allowed), (role, response.status_code)
        if role == "anonymous":
            assert response.status_code == 401
        elif role not in allowed:
            assert response.status_code == 403


# --- CSRF -------------------------------------------------------------------------------------------------
def test_every_post_needs_a_csrf_token(users):
    from jobs.models import BackgroundJob

    boss = client_for(users["superuser"], enforce_csrf_checks=True)
    posts = [reverse(f"admin:{n}", args=a) for n, (m, a, _) in BUTTONS.items() if m == "post"]
    posts += [reverse(f"jobs:{n}", args=a) for n, (m, a, _, _) in ENDPOINTS.items() if m == "post"]
    posts += [reverse("admin:jobs_backgroundjob_changelist"), reverse("admin:customers_nhanhcustomer_pull"),
              reverse("admin:customers_customermapping_match")]
    for url in posts:
        assert boss.post(url, {"action": "retry_jobs", "mode": "all"}).status_code == 403, url
    assert not BackgroundJob.objects.exists()


# --- products: stock sync entry points outside the mapping admin ----------------------------------------------
def test_the_nhanh_webhook_takes_its_token_never_a_session(users):
    """``/webhooks/nhanh/`` is for Nhanh (no session, no CSRF token): without the verify token every role,
    superusers included, gets a JSON 401 and nothing is stored."""
    from products.models import NhanhWebhookDelivery

    for role in ROLES:
        response = client_for(users[role]).post("/webhooks/nhanh/", {"event": "inventoryChange", "data": []},
                                                content_type="application/json")
        assert response.status_code == 401 and response["Content-Type"] == "application/json", role
    assert not NhanhWebhookDelivery.objects.exists()


def test_run_the_product_auto_sync_by_role(users):
    from django_celery_beat.models import PeriodicTask

    install_schedules()
    task = PeriodicTask.objects.get(name="Products: stock auto-sync")
    assert not task.enabled  # off by default
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    for role in ROLES:
        response = client_for(users[role]).post(url, {"action": "run_tasks", "_selected_action": [task.pk]},
                                                follow=users[role] is not None and users[role].is_staff)
        ran = not refused(response) and "successfully run" in response.content.decode()
        assert ran == (role in OPERATOR_UP), role


def test_retrying_a_retry_job_needs_its_targets_permission(users, django_user_model):
    from django.contrib.auth.models import Permission

    from jobs.operations import RETRY_FAILED_SYNC

    customers_only = django_user_model.objects.create_user("cust", is_staff=True)
    customers_only.user_permissions.add(Permission.objects.get(codename="sync_to_shopify"))
    products_only = django_user_model.objects.create_user("prod", is_staff=True)
    products_only.user_permissions.add(Permission.objects.get(codename="sync_products"))
    for target, may, may_not in (("customers", customers_only, products_only),
                                 ("products", products_only, customers_only)):
        params = {"scope": "failed", "target": target}
        assert services.may_start(may, RETRY_FAILED_SYNC, params), target
        assert not services.may_start(may_not, RETRY_FAILED_SYNC, params), target
        assert services.may_start(users["operator"], RETRY_FAILED_SYNC, params)
        assert not services.may_start(users["viewer"], RETRY_FAILED_SYNC, params)
    assert not services.may_start(users["superuser"], RETRY_FAILED_SYNC, {"target": "nonsense"})
