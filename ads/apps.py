from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AdsConfig(AppConfig):
    name = "ads"
    verbose_name = _("Shopee ads")

    def ready(self):
        from config.schedules import Schedule, register
        from jobs import services as jobs

        from .models import ADS_SYNC
        from .services import sync

        # The one place ads registers its job kind. Not resumable: a run whose worker died is failed (its shop
        # is failed and re-queued by the stuck cleanup), never re-run over the chunks another run may hold.
        jobs.register_job_type(ADS_SYNC, label=_("Shopee ads sync"), run=sync.run_sync_job, start=sync.restart_job,
                               permission="ads.enqueue_shop_sync", resumable=False)
        register(
            Schedule("Ads: enqueue shops", "ads.enqueue_shops", "*/15 * * * *", 600,
                     description="Adds a realtime sync entry for every enabled shop.",
                     permissions=("ads.enqueue_shop_sync",)),
            Schedule("Ads: process queue", "ads.process_queue", "*/5 * * * *", 240,
                     description="Starts the runs of pending entries (priority, then age); chunks in parallel.",
                     permissions=("ads.enqueue_shop_sync",)),
            Schedule("Ads: stuck cleanup", "ads.cleanup_stuck", "*/10 * * * *", 500,
                     description="Runs without chunk progress for 30 min → failed and re-queued.",
                     permissions=("ads.reset_shop_sync",)),
            Schedule("Ads: 7-day performance backfill", "ads.backfill", "0 2 * * *", 3600,
                     description="Nightly 02:00 Asia/Ho_Chi_Minh: a backfill entry (7 days of results) per shop.",
                     permissions=("ads.enqueue_shop_sync",)),
            Schedule("Ads: queue cleanup", "ads.cleanup_queue", "0 2 * * *", 3600,
                     description="Drops finished queue rows older than ADS_QUEUE_KEEP_DAYS.",
                     permissions=("ads.delete_syncqueue",)),
            Schedule("Ads: budget scheduler", "ads.budget_scheduler", "0,30 * * * *", 1500,
                     description="Applies the budget of every active window and restores it after.",
                     permissions=("ads.change_budgetschedule",)),
        )
