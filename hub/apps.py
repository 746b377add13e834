from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HubConfig(AppConfig):
    """Where the project is assembled: the admin site's titles and the commands that set the whole hub up
    (``demo``, ``install_schedules``). It may import every app; no app imports it."""

    name = "hub"
    verbose_name = "ShopBridge"

    def ready(self):
        from django.contrib import admin
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from .export import create_export_permissions
        from .roles import sync_roles_after_migrate

        # After every migrate (Django creates new permissions on post_migrate first: auth's receiver is
        # connected before ours), permissions of apps added later join the viewer/operator/manager roles.
        post_migrate.connect(create_export_permissions, dispatch_uid="hub.export_permissions")  # before the roles
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="hub.sync_roles")

        connection_created.connect(_owner_only_sqlite_files, dispatch_uid="shopbridge-sqlite-owner-only")
        admin.site.site_header = "ShopBridge"
        admin.site.site_title = _("ShopBridge admin")
        admin.site.index_title = "Nhanh · Shopify · Pancake · Shopee"


def _owner_only_sqlite_files(sender, connection, **kwargs):
    """The embedded database holds encrypted secrets and everything else: readable by its owner only."""
    import contextlib
    import os

    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    for path in (name, f"{name}-wal", f"{name}-shm"):
        if path and os.path.exists(path) and os.stat(path).st_mode & 0o077:
            with contextlib.suppress(OSError):  # not ours (a shared test database, say): leave it
                os.chmod(path, 0o600)
