"""Three roles a shop owner assigns people to, instead of ticking permissions one by one.

- **viewer**: sees everything of ours (``view_*``): customers, mappings, jobs, pull progress, schedules.
- **operator**: a viewer who also runs the work: starts pulls, auto-match and syncs, cancels and retries jobs
  (``run_*``, ``sync_*``, ``cancel_*``, ``retry_*``, ``enqueue_*``) and exports the lists (``export_*``).
- **manager**: every permission of our apps and of the schedules (django-celery-beat): also edits connections,
  loyalty tiers and schedules (enable/disable), force-restarts and resets pulls, matches and unmatches, deletes.

The groups are created by a migration (hub 0001) and kept in step after every ``migrate`` (post_migrate), so a
permission that a later app adds (products, ads, pancake) joins the right roles by the rule below. Permissions
are only ever added to the groups, never taken away: a shop owner's additions stay.
"""

from __future__ import annotations

VIEWER, OPERATOR, MANAGER = "viewer", "operator", "manager"
ROLES = (VIEWER, OPERATOR, MANAGER)

# Apps whose permissions the roles cover: ours, and the schedules we install. Django's own (users, groups,
# sessions, content types, log entries) stay with superusers.
ROLE_APPS = ("jobs", "integrations", "customers", "products", "ads", "pancake", "hub", "django_celery_beat")
# export_*: a bulk copy of customers' phones and emails (hub/export.py) is a step beyond looking at them.
OPERATOR_PREFIXES = ("run_", "sync_", "cancel_", "retry_", "enqueue_", "export_")


def roles_for(app_label: str, codename: str) -> set[str]:
    """Which roles hold the permission ``app_label.codename``."""
    if app_label not in ROLE_APPS:
        return set()
    roles = {MANAGER}
    if codename.startswith("view_"):
        roles |= {VIEWER, OPERATOR}
    if codename.startswith(OPERATOR_PREFIXES):
        roles.add(OPERATOR)
    return roles


def sync_roles(group_model, permission_model) -> None:
    """Create the role groups if missing and add every permission the rule gives them (set-based)."""
    groups = {name: group_model.objects.get_or_create(name=name)[0] for name in ROLES}
    wanted: dict[str, list[int]] = {name: [] for name in ROLES}
    for pk, app_label, codename in permission_model.objects.filter(
            content_type__app_label__in=ROLE_APPS).values_list("pk", "content_type__app_label", "codename"):
        for role in roles_for(app_label, codename):
            wanted[role].append(pk)
    for name, group in groups.items():
        group.permissions.add(*wanted[name])


def create_all_permissions(apps, verbosity: int = 0) -> None:
    """Permissions of every installed app now (Django would only create them after the whole migrate)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for app_config in global_apps.get_app_configs():
        original = app_config.models_module
        app_config.models_module = original or True  # create_permissions skips apps it thinks have no models
        try:
            create_permissions(app_config, apps=apps, verbosity=verbosity)
        finally:
            app_config.models_module = original


def sync_roles_after_migrate(sender=None, apps=None, using=None, **kwargs) -> None:
    """post_migrate receiver: later apps' permissions join the roles."""
    from django.contrib.auth.models import Group, Permission

    if using not in (None, "default"):
        return
    sync_roles(Group, Permission)
