"""Shopee ads: shops, their campaigns and daily results, budget schedules, and the chunked sync's queue
and per-shop progress (seed 004, rebuilt)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.secrets import mask_secret

ADS_SYNC = "ADS_SYNC"  # the BackgroundJob type of a shop's sync run (registered in AdsConfig.ready)


class Shop(models.Model):
    """One Shopee shop authorized for our partner app. Tokens are secrets: masked in the admin, never
    logged. The refresh token is single use; ``ads.services.tokens`` replaces both under a row lock."""

    shop_id = models.BigIntegerField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    base_url = models.URLField(max_length=300, default="https://partner.shopeemobile.com",
                               help_text="Shopee Open Platform host (the sandbox: http://127.0.0.1:8765/shopee).")
    partner_id = models.BigIntegerField()
    partner_key = models.TextField()
    access_token = models.TextField(blank=True)
    refresh_token = models.TextField(blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    token_refreshed_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True, help_text="Disabled shops are not enqueued by the schedule.")
    is_sandbox = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    SECRET_FIELDS = ("partner_key", "access_token", "refresh_token")

    class Meta:
        ordering = ["shop_id"]
        permissions = [
            ("reset_shop_sync", "Can reset a shop's ads sync"),
            ("retry_failed_chunks", "Can retry failed ads sync chunks"),
            ("enqueue_shop_sync", "Can enqueue an ads sync now"),
        ]

    def __str__(self):
        return f"{self.name or 'shop'} ({self.shop_id})"

    def __repr__(self):
        return f"<Shop {self.shop_id} token={mask_secret(self.access_token)}>"


class Campaign(models.Model):
    shop = models.ForeignKey(Shop, on_delete=models.CASCADE, related_name="campaigns")
    campaign_id = models.BigIntegerField()
    ad_type = models.CharField(max_length=10, blank=True)  # auto | manual
    name = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=20, blank=True)
    bidding_method = models.CharField(max_length=10, blank=True)
    placement = models.CharField(max_length=20, blank=True)
    # Shopee's campaign_budget (0 = unlimited); the edit errors imply a daily amount (unconfirmed).
    daily_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    total_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    settings = models.JSONField(default=dict, blank=True, help_text="manual/auto bidding blocks as served.")
    raw = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    run_id = models.UUIDField(null=True, blank=True, help_text="The sync run that last wrote this row.")

    class Meta:
        ordering = ["shop", "campaign_id"]
        constraints = [models.UniqueConstraint(fields=["shop", "campaign_id"], name="ads_campaign_per_shop")]

    def __str__(self):
        return f"{self.campaign_id} {self.name}"


class PerformanceFields(models.Model):
    date = models.DateField()
    impressions = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    ctr = models.DecimalField(max_digits=9, decimal_places=4, default=0, help_text="Percent (12.23 = 12.23 %).")
    spend = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    direct_orders = models.IntegerField(default=0)
    broad_orders = models.IntegerField(default=0)
    direct_gmv = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    broad_gmv = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    direct_items_sold = models.IntegerField(default=0)
    broad_items_sold = models.IntegerField(default=0)
    roas = models.DecimalField(max_digits=12, decimal_places=4, default=0, help_text="Broad GMV / spend.")
    acos = models.DecimalField(max_digits=12, decimal_places=4, default=0, help_text="Spend / broad GMV, percent.")
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class CampaignDailyPerformance(PerformanceFields):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="daily")

    class Meta:
        ordering = ["campaign", "date"]
        constraints = [models.UniqueConstraint(fields=["campaign", "date"], name="ads_campaign_day")]

    def __str__(self):
        return f"{self.campaign_id} {self.date}"


class ShopDailyPerformance(PerformanceFields):
    shop = models.ForeignKey(Shop, on_delete=models.CASCADE, related_name="daily")

    class Meta:
        ordering = ["shop", "date"]
        constraints = [models.UniqueConstraint(fields=["shop", "date"], name="ads_shop_day")]

    def __str__(self):
        return f"{self.shop_id} {self.date}"


class BudgetSchedule(models.Model):
    """Between ``start_time`` and ``end_time`` (local time) on the chosen weekdays or dates, the campaign's
    budget is ``budget``; afterwards the budget it had before is restored. ``applied_*`` hold the state of
    the occurrence currently applied, so every tick is idempotent and a missed tick catches up."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="budget_schedules")
    name = models.CharField(max_length=200, blank=True)
    days_of_week = models.CharField(max_length=20, blank=True,
                                    help_text="Comma-separated weekdays, 0 = Monday … 6 = Sunday. Empty: every day "
                                              "(unless dates are given).")
    dates = models.JSONField(default=list, blank=True, help_text='Specific dates, e.g. ["2026-12-12"].')
    start_time = models.TimeField()
    end_time = models.TimeField(help_text="Earlier than the start: the window ends the next day.")
    budget = models.DecimalField(max_digits=14, decimal_places=2)
    enabled = models.BooleanField(default=True)
    applied_occurrence = models.CharField(max_length=40, blank=True,
                                          help_text="The window occurrence whose budget is in force now.")
    previous_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["campaign", "start_time"]

    def __str__(self):
        return self.name or f"{self.campaign} {self.start_time:%H:%M}–{self.end_time:%H:%M} → {self.budget}"


class BudgetAction(models.TextChoices):
    APPLIED = "applied", "Applied"
    RESTORED = "restored", "Restored"


class BudgetLog(models.Model):
    schedule = models.ForeignKey(BudgetSchedule, null=True, on_delete=models.SET_NULL, related_name="logs")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="budget_logs")
    action = models.CharField(max_length=10, choices=BudgetAction.choices)
    occurrence = models.CharField(max_length=40, blank=True)
    old_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True)
    new_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)
    reference_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.campaign_id} {self.action} {self.old_budget} → {self.new_budget}"


class SyncType(models.TextChoices):
    REALTIME = "realtime", "Realtime"
    BACKFILL = "backfill", "Backfill"


class QueueStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class SyncQueue(models.Model):
    """A request to sync a shop (``is_chunk`` False), or one chunk of a run: a fixed slice of the campaign
    ids fetched once at the start of the run (``campaign_ids``), never an offset into a list re-fetched."""

    shop = models.ForeignKey(Shop, on_delete=models.CASCADE, related_name="queue")
    sync_type = models.CharField(max_length=10, choices=SyncType.choices, default=SyncType.REALTIME)
    priority = models.IntegerField(default=0, help_text="Higher first.")
    status = models.CharField(max_length=12, choices=QueueStatus.choices, default=QueueStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("jobs.BackgroundJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Chunk rows
    is_chunk = models.BooleanField(default=False)
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    chunk_index = models.IntegerField(null=True, blank=True)
    chunk_size = models.IntegerField(null=True, blank=True)
    campaign_ids = models.JSONField(default=list, blank=True)
    synced = models.IntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True, help_text="Time of the successful attempt.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "sync queue entry"
        verbose_name_plural = "sync queue"
        indexes = [models.Index(fields=["status", "is_chunk", "priority", "created_at"])]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "chunk_index"], name="ads_one_chunk_per_index"),
            # One pending request per shop and type: enqueueing twice is a no-op, decided by the database.
            models.UniqueConstraint(fields=["shop", "sync_type"], condition=models.Q(status="pending", is_chunk=False),
                                    name="ads_one_pending_entry_per_shop_type"),
        ]

    def __str__(self):
        what = f"chunk {self.chunk_index}" if self.is_chunk else self.sync_type
        return f"{self.shop.shop_id} {what} ({self.status})"

    @property
    def offset(self) -> int | None:
        return None if self.chunk_index is None else self.chunk_index * (self.chunk_size or 0)


class Stage(models.TextChoices):
    IDLE = "idle", "Idle"
    SYNCING_CAMPAIGNS = "syncing_campaigns", "Syncing campaigns"
    SYNCING_PERFORMANCE = "syncing_performance", "Syncing performance"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


ACTIVE_STAGES = (Stage.SYNCING_CAMPAIGNS, Stage.SYNCING_PERFORMANCE)


class SyncProgress(models.Model):
    """The current (or last) run of one shop. ``run_id`` names the run: writes of a run that was reset or
    taken over carry the old id and change nothing. ``chunks_done + chunks_failed == total_chunks`` is the
    only test of "every chunk finished"."""

    shop = models.OneToOneField(Shop, on_delete=models.CASCADE, related_name="progress", primary_key=True)
    run_id = models.UUIDField(default=uuid.uuid4)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.IDLE)
    sync_type = models.CharField(max_length=10, choices=SyncType.choices, default=SyncType.REALTIME)
    total_campaigns = models.IntegerField(default=0)
    synced_campaigns = models.IntegerField(default=0)
    total_chunks = models.IntegerField(default=0)
    chunks_done = models.IntegerField(default=0)
    chunks_failed = models.IntegerField(default=0)
    current_chunk = models.IntegerField(default=0, help_text="Index of the chunk finished last.")
    failed_chunks = models.JSONField(default=list, blank=True, help_text='[{"index": 2, "error": "…"}]')
    chunk_size = models.IntegerField(null=True, blank=True, help_text="Adapted to measured chunk times.")
    started_at = models.DateTimeField(null=True, blank=True)
    last_chunk_at = models.DateTimeField(null=True, blank=True)
    performance_started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    stage_log = models.JSONField(default=list, blank=True)
    job = models.ForeignKey("jobs.BackgroundJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    queue_entry = models.ForeignKey(SyncQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "sync progress"
        verbose_name_plural = "sync progress"

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
