from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CustomersConfig(AppConfig):
    name = "customers"
    verbose_name = _("Customers")

    def ready(self):
        from config.schedules import Schedule, register

        from . import operations
        from .services import matching, pulls, sync

        pulls.register()
        matching.register()
        sync.register()
        operations.register()
        # The workflows of the spec: off by default, switched on (and re-timed) in the admin.
        register(
            Schedule("Customers: daily workflow", "customers.workflow_daily", "0 7 * * *", 3600, enabled=False,
                     description="Nhanh new/updated → Shopify all → auto-match → sync changed totals.",
                     permissions=("jobs.run_pull", "customers.run_automatch", "customers.sync_to_shopify")),
            Schedule("Customers: weekly full sync", "customers.workflow_weekly", "0 3 * * 0", 3600, enabled=False,
                     description="Nhanh all and Shopify all in parallel, then auto-match (a Celery chord).",
                     permissions=("jobs.run_pull", "customers.run_automatch")),
            Schedule("Customers: loyalty auto-sync", "customers.sync_changed", "0 */6 * * *", 3600, enabled=False,
                     description="Every 6 hours, re-sync matched customers whose total changed.",
                     permissions=("customers.sync_to_shopify",)),
        )
