"""The hub at a glance: what the admin home shows above the app list (``templates/admin/index.html``) and what
``GET /api/overview/`` sends for its refresh. The template only renders what ``build_overview`` returns.

Four sections, each shown only to whom may see its models (a viewer of jobs sees jobs, and no query runs for a
section the user may not see):

- **connections**: one row per upstream connection, Pancake page and Shopee shop: the health its clients last
  recorded (``integrations.status``), the last successful pull of each kind with its counts, and the
  "Test connection" button (the Connections admin action, for who may change connections);
- **data**: customers and products per system, matched / unmatched / ambiguous, syncs pending and failed (links to
  the filtered admin lists) and the last successful sync;
- **jobs**: running now with progress (stale ones marked), failed in the last 24 h;
- **schedules**: enabled periodic tasks with their next run in local time, and disabled workflows with a one-line
  note of what they do (``config.schedules``).

Cost: a fixed number of queries whatever the data size (``tests/test_overview.py`` counts them on empty and full
tables). Table sizes come from one statement: on PostgreSQL a count that stops at ``EXACT_BELOW`` rows (an
index-only scan of the primary key) and, past it, the planner's estimate (``pg_class.reltuples``, shown "≈");
SQLite counts. Matched / pending / failed are one aggregate per mapping table (``COUNT(*) FILTER``, one pass over
the mappings: the model keeps them unindexed on purpose, see ``CustomerMapping``); jobs are read through the
status index and capped.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

EXACT_BELOW = 10_000  # tables this size or smaller are counted exactly; larger ones estimated
JOBS_SHOWN = 20
ROWS_SHOWN = 50  # Pancake pages, Shopee shops


# --- small helpers ------------------------------------------------------------------------------------------------
def admin_url(model_label: str, view: str = "changelist", *args, query: str = "") -> str | None:
    app_label, model = model_label.split(".")
    try:
        url = reverse(f"admin:{app_label}_{model}_{view}", args=args)
    except NoReverseMatch:  # not in the admin (yet)
        return None
    return f"{url}?{query}" if query else url


def local(dt: datetime | None) -> datetime | None:
    """In the shop's zone (Asia/Ho_Chi_Minh), whatever zone a request runs in."""
    return dt.astimezone(ZoneInfo(settings.TIME_ZONE)) if dt else None


def _model(label: str):
    try:
        return apps.get_model(label)
    except LookupError:
        return None


@dataclasses.dataclass
class Figure:
    value: int
    estimated: bool = False


def table_sizes(models: list) -> dict[Any, Figure]:
    """Rows in each model's table, in one statement (see the module doc)."""
    if not models:
        return {}
    qn = connection.ops.quote_name
    parts = []
    for m in models:
        table = qn(m._meta.db_table)
        parts.append(f"(SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {EXACT_BELOW + 1}) s)"
                     if connection.vendor == "postgresql" else f"(SELECT COUNT(*) FROM {table})")
        if connection.vendor == "postgresql":
            parts.append(f"(SELECT reltuples::bigint FROM pg_class WHERE oid = '{table}'::regclass)")
    with connection.cursor() as cur:
        cur.execute("SELECT " + ", ".join(parts))
        row = cur.fetchone()
    sizes = {}
    for i, m in enumerate(models):
        if connection.vendor != "postgresql":
            sizes[m] = Figure(int(row[i]))
            continue
        exact, estimate = int(row[2 * i]), int(row[2 * i + 1] or 0)
        sizes[m] = Figure(exact) if exact <= EXACT_BELOW else Figure(max(estimate, exact), estimated=True)
    return sizes


def mapping_figures(model) -> dict[str, Any]:
    """Matched (active), pending, failed and the last successful sync of one mapping table: one aggregate."""
    return model.objects.order_by().aggregate(
        matched=Count("pk", filter=Q(is_active=True)),
        pending=Count("pk", filter=Q(is_active=True, sync_status="pending")),
        failed=Count("pk", filter=Q(is_active=True, sync_status="failed")),
        last_synced_at=Max("synced_at"),
    )


# --- sections -----------------------------------------------------------------------------------------------------
SYSTEM_LABELS = {"nhanh": "Nhanh.vn", "shopify": "Shopify", "pancake": "Pancake", "shopee": "Shopee"}


def _last_pulls(job_types: list[str]) -> dict[str, Any]:
    """The newest completed job of each type: one query (a subquery on the (status, type) index)."""
    from jobs.models import BackgroundJob, JobStatus

    if not job_types:
        return {}
    newest = (BackgroundJob.objects.order_by().filter(status=JobStatus.COMPLETED, type__in=job_types)
              .values("type").annotate(last=Max("pk")).values_list("last", flat=True))
    return {j.type: j for j in BackgroundJob.objects.filter(pk__in=newest)}


def _status_row(statuses: dict, key: str) -> dict[str, Any]:
    s = statuses.get(key)
    if s is None:
        return {"state": "unknown", "label": _("No call recorded yet"), "since": None, "error": "",
                "last_ok_at": None}
    if s.ok:
        return {"state": "ok", "label": _("OK"), "since": None, "error": "", "last_ok_at": local(s.last_ok_at)}
    return {"state": "failing", "label": _("Failing"), "since": local(s.failing_since), "error": s.last_error,
            "last_ok_at": local(s.last_ok_at)}


def connections_section(user) -> dict[str, Any] | None:
    from integrations.models import Connection, UpstreamStatus
    from jobs.pull_specs import pull_specs

    see_connections = user.has_perm("integrations.view_connection")
    see_pages = user.has_perm("pancake.view_pancakepage") and _model("pancake.PancakePage") is not None
    see_shops = user.has_perm("ads.view_shop") and _model("ads.Shop") is not None
    if not (see_connections or see_pages or see_shops):
        return None
    see_jobs = user.has_perm("jobs.view_backgroundjob")
    may_test = user.has_perm("integrations.change_connection")
    statuses = {s.key: s for s in UpstreamStatus.objects.all()}
    specs = [s for s in pull_specs()]
    last = _last_pulls([s.job_type for s in specs]) if see_jobs else {}

    def pulls_of(system: str) -> list[dict[str, Any]]:
        rows = []
        for spec in specs:
            if spec.system != system:
                continue
            job = last.get(spec.job_type)
            rows.append({"kind": spec.kind, "label": spec.label, "job": job,
                         "completed_at": local(job.completed_at) if job else None,
                         "url": admin_url("jobs.backgroundjob", "change", job.pk) if job else None})
        return rows

    rows = []
    if see_connections:
        for conn in Connection.objects.all():
            rows.append({"kind": "connection", "system": conn.system, "name": SYSTEM_LABELS.get(conn.system,
                                                                                                 conn.system),
                         "detail": conn.base_url, "pk": conn.pk, "sandbox": conn.is_sandbox,
                         "status": _status_row(statuses, conn.system), "pulls": pulls_of(conn.system) if see_jobs
                         else [], "url": admin_url("integrations.connection", "change", conn.pk)})
    if see_pages:
        from pancake.models import PancakePage

        for page in PancakePage.objects.order_by("page_id")[:ROWS_SHOWN]:
            rows.append({"kind": "page", "system": "pancake", "name": _("Pancake page %(name)s") % {
                "name": page.name or page.page_id}, "detail": page.page_id if page.enabled else _("disabled"),
                "status": _status_row(statuses, f"pancake:{page.page_id}"), "pulls": [],
                "url": admin_url("pancake.pancakepage", "change", page.pk)})
    if see_shops:
        from ads.models import Shop

        for shop in Shop.objects.select_related("progress").order_by("shop_id")[:ROWS_SHOWN]:
            progress = getattr(shop, "progress", None)
            detail = str(shop.shop_id) if shop.enabled else _("disabled")
            if progress is not None and progress.completed_at and progress.stage == "completed":
                detail = _("%(id)s · last ads sync %(when)s") % {
                    "id": shop.shop_id, "when": local(progress.completed_at).strftime("%d/%m/%Y %H:%M")}
            rows.append({"kind": "shop", "system": "shopee", "name": _("Shopee shop %(name)s") % {
                "name": shop.name or shop.shop_id}, "detail": detail,
                "status": _status_row(statuses, f"shopee:{shop.shop_id}"), "pulls": [],
                "url": admin_url("ads.shop", "change", shop.pk)})
    return {"rows": rows, "may_test": may_test,
            "test_url": admin_url("integrations.connection") if may_test else None}


# What the data section counts: (label, model label) per system; mappings and ambiguous ones apart.
CUSTOMER_TABLES = [
    (gettext_lazy("Nhanh customers"), "customers.NhanhCustomer"),
    (gettext_lazy("Shopify customers"), "customers.ShopifyCustomer"),
    (gettext_lazy("Pancake chat customers"), "pancake.PancakeCustomer"),
]
PRODUCT_TABLES = [
    (gettext_lazy("Nhanh products"), "products.NhanhProduct"),
    (gettext_lazy("Shopify products"), "products.ShopifyProduct"),
    (gettext_lazy("Shopify variants"), "products.ShopifyVariant"),
]
GROUPS = [
    # key, title, tables, the side whose rows are matched, mapping model, ambiguous model
    ("customers", gettext_lazy("Customers"), CUSTOMER_TABLES, "customers.NhanhCustomer", "customers.CustomerMapping",
     "customers.AmbiguousMatch"),
    ("products", gettext_lazy("Products"), PRODUCT_TABLES, "products.NhanhProduct", "products.ProductMapping",
     "products.AmbiguousSku"),
]


def _may_view(user, model) -> bool:
    return model is not None and user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


def data_section(user) -> dict[str, Any] | None:
    wanted: list = []
    plan = []
    for key, title, tables, matched_side, mapping_label, ambiguous_label in GROUPS:
        counted = [(label, _model(m)) for label, m in tables]
        counted = [(label, m) for label, m in counted if _may_view(user, m)]
        mapping = _model(mapping_label)
        mapping = mapping if _may_view(user, mapping) else None
        ambiguous = _model(ambiguous_label)
        ambiguous = ambiguous if _may_view(user, ambiguous) else None
        side = _model(matched_side)
        if not (counted or mapping or ambiguous):
            continue
        wanted += [m for _label, m in counted] + ([ambiguous] if ambiguous else [])
        if mapping and side and side not in wanted:
            wanted.append(side)  # unmatched = that side's rows − matched (counted, not shown, if not viewable)
        plan.append((key, title, counted, side, mapping, ambiguous))
    if not plan:
        return None
    sizes = table_sizes(list(dict.fromkeys(wanted)))
    groups = []
    for key, title, counted, side, mapping, ambiguous in plan:
        group = {"key": key, "title": title, "tables": [
            {"label": label, "figure": sizes[m], "url": admin_url(m._meta.label_lower)} for label, m in counted]}
        if mapping is not None:
            figures = mapping_figures(mapping)
            base = mapping._meta.label_lower
            side_size = sizes[side]
            group["mapping"] = {
                "matched": Figure(figures["matched"]),
                "unmatched": Figure(max(side_size.value - figures["matched"], 0), side_size.estimated),
                "pending": Figure(figures["pending"]),
                "failed": Figure(figures["failed"]),
                "last_synced_at": local(figures["last_synced_at"]),
                "url": admin_url(base, query="is_active__exact=1"),
                "pending_url": admin_url(base, query="is_active__exact=1&sync_status__exact=pending"),
                "failed_url": admin_url(base, query="is_active__exact=1&sync_status__exact=failed"),
            }
        if ambiguous is not None:
            group["ambiguous"] = {"figure": sizes[ambiguous], "url": admin_url(ambiguous._meta.label_lower)}
        groups.append(group)
    return {"groups": groups}


def jobs_section(user) -> dict[str, Any] | None:
    from jobs.display import job_display
    from jobs.models import ACTIVE_STATUSES, BackgroundJob, JobStatus

    if not user.has_perm("jobs.view_backgroundjob"):
        return None
    since = timezone.now() - timedelta(hours=24)
    active = list(BackgroundJob.objects.filter(status__in=ACTIVE_STATUSES).select_related("started_by_user")
                  .order_by("-pk")[:JOBS_SHOWN])
    failed = list(BackgroundJob.objects.filter(status=JobStatus.FAILED, completed_at__gte=since)
                  .select_related("started_by_user").order_by("-pk")[:JOBS_SHOWN])

    def row(job):
        return {"job": job, "display": job_display(job), "url": admin_url("jobs.backgroundjob", "change", job.pk),
                "error": job.error.split("\n", 1)[0][:200] if job.error else ""}

    running = [row(j) for j in active]
    return {
        "running": [r for r in running if not r["display"]["is_stale"]],
        "stale": [r for r in running if r["display"]["is_stale"]],
        "failed": [row(j) for j in failed],
        "any_active": bool(active),
        "list_url": admin_url("jobs.backgroundjob"),
        "failed_url": admin_url("jobs.backgroundjob", query="status__exact=FAILED"),
    }


def next_run(task, now: datetime) -> datetime | None:
    """When beat runs ``task`` next (None if it cannot tell)."""
    try:
        if task.interval_id:
            every = task.interval.schedule.run_every
            base = task.last_run_at or task.start_time or task.date_changed or now
            due = base + every
            return due if due > now else now
        if task.crontab_id:
            return now + task.crontab.schedule.remaining_estimate(now)
        if task.clocked_id:
            return task.clocked.clocked_time
    except (AttributeError, ValueError, TypeError):
        return None
    return None


def one_line(text: str) -> str:
    first = (text or "").strip().split("\n", 1)[0]
    head, dot, _rest = first.partition(". ")
    return head + ("." if dot else "")


def schedules_section(user) -> dict[str, Any] | None:
    from django_celery_beat.models import PeriodicTask

    from config.schedules import SCHEDULES

    if not user.has_perm("django_celery_beat.view_periodictask"):
        return None
    described = {s.name: s.description for s in SCHEDULES}
    now = timezone.now()
    enabled, disabled = [], []
    for task in PeriodicTask.objects.select_related("interval", "crontab", "clocked").order_by("name"):
        url = admin_url("django_celery_beat.periodictask", "change", task.pk)
        if task.enabled:
            enabled.append({"name": task.name, "next_run": local(next_run(task, now)), "url": url,
                            "last_run_at": local(task.last_run_at)})
        else:
            disabled.append({"name": task.name, "note": one_line(described.get(task.name) or task.description),
                             "url": url})
    enabled.sort(key=lambda r: (r["next_run"] is None, r["next_run"] or now))
    return {"enabled": enabled, "disabled": disabled, "zone": settings.TIME_ZONE}


def build_overview(user) -> dict[str, Any]:
    """Everything the overview shows to ``user`` (sections they may not see are None)."""
    sections = {
        "connections": connections_section(user),
        "data": data_section(user),
        "jobs": jobs_section(user),
        "schedules": schedules_section(user),
    }
    jobs = sections["jobs"]
    any_active = bool(jobs and jobs["any_active"])
    return {**sections, "any_active": any_active, "refresh_seconds": 2 if any_active else 10,
            "generated_at": local(timezone.now()), "empty": not any(sections.values())}
