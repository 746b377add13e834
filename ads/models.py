"""Shopee ads: shops, their campaigns and daily results, budget schedules, and the chunked sync's queue
and per-shop progress (seed 004, rebuilt)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from integrations.secrets import SecretField, mask_secret

ADS_SYNC = "ADS_SYNC"  # the BackgroundJob type of a shop's sync run (registered in AdsConfig.ready)


class Shop(models.Model):
    """One Shopee shop authorized for our partner app. Tokens are secrets: masked in the admin, never
    logged. The refresh token is single use; ``ads.services.tokens`` replaces both under a row lock."""

    shop_id = models.BigIntegerField(verbose_name=_("shop id"), unique=True)
    name = models.CharField(verbose_name=_("name"), max_length=200, blank=True)
    base_url = models.URLField(verbose_name=_("base url"), max_length=300, default="https://partner.shopeemobile.com",
                               help_text=_("Shopee Open Platform host (the sandbox: http://127.0.0.1:8765/shopee)."))
    partner_id = models.BigIntegerField(verbose_name=_("partner id"))
    partner_key = SecretField(verbose_name=_("partner key"))
    access_token = SecretField(verbose_name=_("access token"), blank=True)
    refresh_token = SecretField(verbose_name=_("refresh token"), blank=True)
    token_expires_at = models.DateTimeField(verbose_name=_("token expires at"), null=True, blank=True)
    token_refreshed_at = models.DateTimeField(verbose_name=_("token refreshed at"), null=True, blank=True)
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True,
                                  help_text=_("Disabled shops are not enqueued by the schedule."))
    is_sandbox = models.BooleanField(verbose_name=_("is sandbox"), default=False)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    SECRET_FIELDS = ("partner_key", "access_token", "refresh_token")

    class Meta:
        verbose_name = _("shop")
        verbose_name_plural = _("shops")
        ordering = ["shop_id"]
        permissions = [
            ("reset_shop_sync", "Can reset a shop's ads sync"),
            ("retry_failed_chunks", "Can retry failed ads sync chunks"),
            ("enqueue_shop_sync", "Can enqueue an ads sync now"),
        ]

    def __str__(self):
        return f"{self.name or gettext('shop')} ({self.shop_id})"

    def __repr__(self):
        return f"<Shop {self.shop_id} token={mask_secret(self.access_token)}>"


class Campaign(models.Model):
    shop = models.ForeignKey(Shop, verbose_name=_("shop"), on_delete=models.CASCADE, related_name="campaigns")
    campaign_id = models.BigIntegerField(verbose_name=_("campaign id"))
    ad_type = models.CharField(verbose_name=_("ad type"), max_length=10, blank=True)  # auto | manual
    name = models.CharField(verbose_name=_("name"), max_length=300, blank=True)
    status = models.CharField(verbose_name=_("status"), max_length=20, blank=True)
    bidding_method = models.CharField(verbose_name=_("bidding method"), max_length=10, blank=True)
    placement = models.CharField(verbose_name=_("placement"), max_length=20, blank=True)
    # Shopee's campaign_budget (0 = unlimited); the edit errors imply a daily amount (unconfirmed).
    daily_budget = models.DecimalField(verbose_name=_("daily budget"), max_digits=14, decimal_places=2, null=True,
                                       blank=True)
    total_budget = models.DecimalField(verbose_name=_("total budget"), max_digits=14, decimal_places=2, null=True,
                                       blank=True)
    start_time = models.DateTimeField(verbose_name=_("start time"), null=True, blank=True)
    end_time = models.DateTimeField(verbose_name=_("end time"), null=True, blank=True)
    settings = models.JSONField(verbose_name=_("settings"), default=dict, blank=True,
                                help_text=_("manual/auto bidding blocks as served."))
    raw = models.JSONField(verbose_name=_("raw"), default=dict, blank=True)
    synced_at = models.DateTimeField(verbose_name=_("synced at"), default=timezone.now)
    run_id = models.UUIDField(verbose_name=_("run id"), null=True, blank=True,
                              help_text=_("The sync run that last wrote this row."))

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["shop", "campaign_id"]
        constraints = [models.UniqueConstraint(fields=["shop", "campaign_id"], name="ads_campaign_per_shop")]

    def __str__(self):
        return f"{self.campaign_id} {self.name}"


class PerformanceFields(models.Model):
    date = models.DateField(verbose_name=_("date"))
    impressions = models.BigIntegerField(verbose_name=_("impressions"), default=0)
    clicks = models.BigIntegerField(verbose_name=_("clicks"), default=0)
    ctr = models.DecimalField(verbose_name=_("ctr"), max_digits=9, decimal_places=4, default=0,
                              help_text=_("Percent (12.23 = 12.23 %)."))
    spend = models.DecimalField(verbose_name=_("spend"), max_digits=16, decimal_places=2, default=0)
    direct_orders = models.IntegerField(verbose_name=_("direct orders"), default=0)
    broad_orders = models.IntegerField(verbose_name=_("broad orders"), default=0)
    direct_gmv = models.DecimalField(verbose_name=_("direct gmv"), max_digits=16, decimal_places=2, default=0)
    broad_gmv = models.DecimalField(verbose_name=_("broad gmv"), max_digits=16, decimal_places=2, default=0)
    direct_items_sold = models.IntegerField(verbose_name=_("direct items sold"), default=0)
    broad_items_sold = models.IntegerField(verbose_name=_("broad items sold"), default=0)
    roas = models.DecimalField(verbose_name=_("roas"), max_digits=12, decimal_places=4, default=0,
                               help_text=_("Broad GMV / spend."))
    acos = models.DecimalField(verbose_name=_("acos"), max_digits=12, decimal_places=4, default=0,
                               help_text=_("Spend / broad GMV, percent."))
    synced_at = models.DateTimeField(verbose_name=_("synced at"), default=timezone.now)

    class Meta:
        abstract = True


class CampaignDailyPerformance(PerformanceFields):
    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE, related_name="daily")

    class Meta:
        verbose_name = _("campaign daily performance")
        verbose_name_plural = _("campaign daily performances")
        ordering = ["campaign", "date"]
        constraints = [models.UniqueConstraint(fields=["campaign", "date"], name="ads_campaign_day")]

    def __str__(self):
        return f"{self.campaign_id} {self.date}"


class ShopDailyPerformance(PerformanceFields):
    shop = models.ForeignKey(Shop, verbose_name=_("shop"), on_delete=models.CASCADE, related_name="daily")

    class Meta:
        verbose_name = _("shop daily performance")
        verbose_name_plural = _("shop daily performances")
        ordering = ["shop", "date"]
        constraints = [models.UniqueConstraint(fields=["shop", "date"], name="ads_shop_day")]

    def __str__(self):
        return f"{self.shop_id} {self.date}"


class BudgetSchedule(models.Model):
    """Between ``start_time`` and ``end_time`` (local time) on the chosen weekdays or dates, the campaign's
    budget is ``budget``; afterwards the budget it had before is restored. ``applied_*`` hold the state of
    the occurrence currently applied, so every tick is idempotent and a missed tick catches up."""

    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE,
                                 related_name="budget_schedules")
    name = models.CharField(verbose_name=_("name"), max_length=200, blank=True)
    days_of_week = models.CharField(verbose_name=_("days of week"), max_length=20, blank=True,
                                    help_text=_("Comma-separated weekdays, 0 = Monday … 6 = Sunday. Empty: every day "
                                              "(unless dates are given)."))
    dates = models.JSONField(verbose_name=_("dates"), default=list, blank=True,
                             help_text=_('Specific dates, e.g. ["2026-12-12"].'))
    start_time = models.TimeField(verbose_name=_("start time"))
    end_time = models.TimeField(verbose_name=_("end time"),
                                help_text=_("Earlier than the start: the window ends the next day."))
    budget = models.DecimalField(verbose_name=_("budget"), max_digits=14, decimal_places=2)
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True)
    applied_occurrence = models.CharField(verbose_name=_("applied occurrence"), max_length=40, blank=True,
                                          help_text=_("The window occurrence whose budget is in force now."))
    previous_budget = models.DecimalField(verbose_name=_("previous budget"), max_digits=14, decimal_places=2,
                                          null=True, blank=True)
    applied_at = models.DateTimeField(verbose_name=_("applied at"), null=True, blank=True)
    last_error = models.TextField(verbose_name=_("last error"), blank=True)

    class Meta:
        verbose_name = _("budget schedule")
        verbose_name_plural = _("budget schedules")
        ordering = ["campaign", "start_time"]

    def __str__(self):
        return self.name or f"{self.campaign} {self.start_time:%H:%M}–{self.end_time:%H:%M} → {self.budget}"


class BudgetAction(models.TextChoices):
    APPLIED = "applied", _("Applied")
    RESTORED = "restored", _("Restored")


class BudgetLog(models.Model):
    schedule = models.ForeignKey(BudgetSchedule, verbose_name=_("schedule"), null=True, on_delete=models.SET_NULL,
                                 related_name="logs")
    campaign = models.ForeignKey(Campaign, verbose_name=_("campaign"), on_delete=models.CASCADE,
                                 related_name="budget_logs")
    action = models.CharField(verbose_name=_("action"), max_length=10, choices=BudgetAction.choices)
    occurrence = models.CharField(verbose_name=_("occurrence"), max_length=40, blank=True)
    old_budget = models.DecimalField(verbose_name=_("old budget"), max_digits=14, decimal_places=2, null=True)
    new_budget = models.DecimalField(verbose_name=_("new budget"), max_digits=14, decimal_places=2, null=True)
    ok = models.BooleanField(verbose_name=_("ok"), default=True)
    error = models.TextField(verbose_name=_("error"), blank=True)
    reference_id = models.CharField(verbose_name=_("reference id"), max_length=100, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("budget log")
        verbose_name_plural = _("budget logs")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.campaign_id} {self.action} {self.old_budget} → {self.new_budget}"


class SyncType(models.TextChoices):
    REALTIME = "realtime", _("Realtime")
    BACKFILL = "backfill", _("Backfill")


class QueueStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


class SyncQueue(models.Model):
    """A request to sync a shop (``is_chunk`` False), or one chunk of a run: a fixed slice of the campaign
    ids fetched once at the start of the run (``campaign_ids``), never an offset into a list re-fetched."""

    shop = models.ForeignKey(Shop, verbose_name=_("shop"), on_delete=models.CASCADE, related_name="queue")
    sync_type = models.CharField(verbose_name=_("sync type"), max_length=10, choices=SyncType.choices,
                                 default=SyncType.REALTIME)
    priority = models.IntegerField(verbose_name=_("priority"), default=0, help_text=_("Higher first."))
    status = models.CharField(verbose_name=_("status"), max_length=12, choices=QueueStatus.choices,
                              default=QueueStatus.PENDING)
    attempts = models.PositiveIntegerField(verbose_name=_("attempts"), default=0)
    error = models.TextField(verbose_name=_("error"), blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)
    started_at = models.DateTimeField(verbose_name=_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)
    job = models.ForeignKey("jobs.BackgroundJob", verbose_name=_("job"), null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="+")
    # Chunk rows
    is_chunk = models.BooleanField(verbose_name=_("is chunk"), default=False)
    run_id = models.UUIDField(verbose_name=_("run id"), null=True, blank=True, db_index=True)
    chunk_index = models.IntegerField(verbose_name=_("chunk index"), null=True, blank=True)
    chunk_size = models.IntegerField(verbose_name=_("chunk size"), null=True, blank=True)
    campaign_ids = models.JSONField(verbose_name=_("campaign ids"), default=list, blank=True)
    synced = models.IntegerField(verbose_name=_("synced"), default=0)
    seconds = models.FloatField(verbose_name=_("seconds"), null=True, blank=True,
                                help_text=_("Time of the successful attempt."))

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("sync queue entry")
        verbose_name_plural = _("sync queue")
        indexes = [models.Index(fields=["status", "is_chunk", "priority", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "chunk_index"], name="ads_one_chunk_per_index"),
            # One pending request per shop and type: enqueueing twice is a no-op, decided by the database.
            models.UniqueConstraint(fields=["shop", "sync_type"], condition=models.Q(status="pending", is_chunk=False),
                                    name="ads_one_pending_entry_per_shop_type"),
        ]

    def __str__(self):
        what = gettext("chunk %(n)s") % {"n": self.chunk_index} if self.is_chunk else self.get_sync_type_display()
        return f"{self.shop.shop_id} {what} ({self.get_status_display()})"

    @property
    def offset(self) -> int | None:
        return None if self.chunk_index is None else self.chunk_index * (self.chunk_size or 0)


class Stage(models.TextChoices):
    IDLE = "idle", _("Idle")
    SYNCING_CAMPAIGNS = "syncing_campaigns", _("Syncing campaigns")
    SYNCING_PERFORMANCE = "syncing_performance", _("Syncing performance")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


ACTIVE_STAGES = (Stage.SYNCING_CAMPAIGNS, Stage.SYNCING_PERFORMANCE)


class SyncProgress(models.Model):
    """The current (or last) run of one shop. ``run_id`` names the run: writes of a run that was reset or
    taken over carry the old id and change nothing. ``chunks_done + chunks_failed == total_chunks`` is the
    only test of "every chunk finished"."""

    shop = models.OneToOneField(Shop, verbose_name=_("shop"), on_delete=models.CASCADE, related_name="progress",
                                primary_key=True)
    run_id = models.UUIDField(verbose_name=_("run id"), default=uuid.uuid4)
    stage = models.CharField(verbose_name=_("stage"), max_length=20, choices=Stage.choices, default=Stage.IDLE)
    sync_type = models.CharField(verbose_name=_("sync type"), max_length=10, choices=SyncType.choices,
                                 default=SyncType.REALTIME)
    total_campaigns = models.IntegerField(verbose_name=_("total campaigns"), default=0)
    synced_campaigns = models.IntegerField(verbose_name=_("synced campaigns"), default=0)
    total_chunks = models.IntegerField(verbose_name=_("total chunks"), default=0)
    chunks_done = models.IntegerField(verbose_name=_("chunks done"), default=0)
    chunks_failed = models.IntegerField(verbose_name=_("chunks failed"), default=0)
    current_chunk = models.IntegerField(verbose_name=_("current chunk"), default=0,
                                        help_text=_("Index of the chunk finished last."))
    failed_chunks = models.JSONField(verbose_name=_("failed chunks"), default=list, blank=True,
                                     help_text=_('[{"index": 2, "error": "…"}]'))
    chunk_size = models.IntegerField(verbose_name=_("chunk size"), null=True, blank=True,
                                     help_text=_("Adapted to measured chunk times."))
    started_at = models.DateTimeField(verbose_name=_("started at"), null=True, blank=True)
    last_chunk_at = models.DateTimeField(verbose_name=_("last chunk at"), null=True, blank=True)
    performance_started_at = models.DateTimeField(verbose_name=_("performance started at"), null=True, blank=True)
    completed_at = models.DateTimeField(verbose_name=_("completed at"), null=True, blank=True)
    error_message = models.TextField(verbose_name=_("error message"), blank=True)
    stage_log = models.JSONField(verbose_name=_("stage log"), default=list, blank=True)
    job = models.ForeignKey("jobs.BackgroundJob", verbose_name=_("job"), null=True, blank=True,
                            on_delete=models.SET_NULL, related_name="+")
    queue_entry = models.ForeignKey(SyncQueue, verbose_name=_("queue entry"), null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = _("sync progress")
        verbose_name_plural = _("sync progress")

    def __str__(self):
        return f"{self.shop_id} {self.stage}"

    @property
    def chunks_finished(self) -> int:
        return self.chunks_done + self.chunks_failed

    @property
    def progress_percent(self) -> float:
        if self.stage == Stage.COMPLETED:
            return 100.0
        if not self.total_campaigns:
            return 0.0
        return round(100.0 * self.synced_campaigns / self.total_campaigns, 1)

    @property
    def minutes_since_last_chunk(self) -> float | None:
        beat = self.last_chunk_at or self.started_at
        if beat is None:
            return None
        return round((timezone.now() - beat).total_seconds() / 60, 1)

    @property
    def is_stuck(self) -> bool:
        minutes = self.minutes_since_last_chunk
        return self.stage in ACTIVE_STAGES and minutes is not None and minutes > settings.ADS_STUCK_MINUTES


def stuck_cutoff():
    return timezone.now() - timedelta(minutes=settings.ADS_STUCK_MINUTES)
