from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PancakeConfig(AppConfig):
    name = "pancake"
    verbose_name = _("Pancake")

    def ready(self):
        from config.schedules import Schedule, register

        from .services import linking, pulls

        pulls.register()
        linking.register()
        register(
            Schedule("Pancake: incremental customers", "pancake.pull_incremental", "*/5 * * * *", 240,
                     description="Every enabled page: customers updated since the newest stored (first: 30 days).",
                     permissions=("jobs.run_pull",)),
            Schedule("Pancake: backfill customers", "pancake.pull_backfill", "0 2 * * *", 3600,
                     description="Every enabled page: customers older than the oldest stored, nightly 02:00.",
                     permissions=("jobs.run_pull",)),
        )
