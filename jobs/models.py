"""Job tracking: every long operation is a BackgroundJob; every pull is guarded by a PullProgress row.

This app knows nothing of the apps that use it: they register handlers (see ``jobs.registry``).
"""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


def stale_after() -> timedelta:
    return timedelta(seconds=settings.SHOPBRIDGE["STALE_AFTER_SECONDS"])


class JobStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class StartedBy(models.TextChoices):
    USER = "user", "User"
    BEAT = "beat", "Schedule (beat)"
    COMMAND = "command", "Command"
    SYSTEM = "system", "System"


class BackgroundJob(models.Model):
    # One of the types apps register (jobs.registry); validated when a job is created, no choices here, so a
    # new type needs no migration of this app.
    type = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True)
    total = models.PositiveIntegerField(null=True, blank=True, help_text="Empty while unknown.")
    processed = models.PositiveIntegerField(default=0)
    successful = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    # What the registered handler needs to run this job (again, for retry).
    params = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Set when the worker running the job is shutting down (SIGTERM): the job stops at its next batch and is
    # handed back to the queue to continue elsewhere.
    handback_requested = models.BooleanField(default=False)
    # Runs started: 1 for the first, +1 for each rescue after its worker died. The run that claimed the job
    # with this number is the only one whose progress is written; an older one learns it was superseded.
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="Celery worker running the job.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    started_by = models.CharField(max_length=10, choices=StartedBy.choices, default=StartedBy.SYSTEM)
    started_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    celery_task_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "type"])]
        permissions = [
            ("cancel_backgroundjob", "Can cancel background jobs"),
            ("retry_backgroundjob", "Can retry background jobs"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.type_label} ({self.get_status_display()})"

    @property
    def type_label(self) -> str:
        from .registry import job_type_label

        return job_type_label(self.type)

    # --- derived figures (the dashboard and the JSON endpoint show these) ---------------------
    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def elapsed_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.completed_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 0.0)

    @property
    def speed(self) -> float | None:
        """Items per second over the run so far."""
        elapsed = self.elapsed_seconds
        if not elapsed or not self.processed:
            return None
        return self.processed / elapsed

    @property
    def percent(self) -> float | None:
        if not self.total:
            return 100.0 if self.status == JobStatus.COMPLETED else None
        return min(100.0, 100.0 * self.processed / self.total)

    @property
    def eta_seconds(self) -> float | None:
        if self.status != JobStatus.RUNNING or not self.total or not self.speed:
            return None
        return max(self.total - self.processed, 0) / self.speed

    @property
    def heartbeat_age_seconds(self) -> float | None:
        beat = self.heartbeat_at or self.started_at
        if not beat or not self.is_active:
            return None
        return max((timezone.now() - beat).total_seconds(), 0.0)

    @property
    def is_stale(self) -> bool:
        age = self.heartbeat_age_seconds
        return self.status == JobStatus.RUNNING and age is not None and age > stale_after().total_seconds()

    @property
    def started_by_label(self) -> str:
        if self.started_by == StartedBy.USER and self.started_by_user_id:
            return self.started_by_user.get_username()
        return self.get_started_by_display()


class PullStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class PullProgress(models.Model):
    """One row per progress id: who holds the pull, its heartbeat and the checkpoint to resume from.

    A pull is "running" while ``status`` is running AND its heartbeat is younger than the stale window.
    ``run_token`` names the current holder; a force restart or takeover hands out a new token, and
    the old worker learns it lost the pull at its next heartbeat.
    """

    progress_id = models.CharField(max_length=120, unique=True)
    system = models.CharField(max_length=20, db_index=True)
    kind = models.CharField(max_length=20, db_index=True)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=PullStatus.choices, default=PullStatus.RUNNING)
    run_token = models.UUIDField(default=uuid.uuid4)
    job = models.ForeignKey(BackgroundJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    checkpoint = models.JSONField(default=dict, blank=True, help_text="Cursor or page reached; a resume starts here.")
    items_done = models.PositiveIntegerField(default=0, help_text="Rows pulled so far in this run.")
    started_at = models.DateTimeField(default=timezone.now)
    last_pulled_at = models.DateTimeField(default=timezone.now, help_text="Heartbeat, beaten on every batch.")
    completed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_pulled_at"]
        verbose_name = "pull progress"
        verbose_name_plural = "pull progress"
        permissions = [
            ("run_pull", "Can start pulls"),
            ("force_restart_pull", "Can force-restart a running pull"),
            ("reset_pull", "Can reset pull progress"),
        ]

    def __str__(self):
        return self.progress_id

    @property
    def is_completed(self) -> bool:
        return self.status == PullStatus.COMPLETED

    @property
    def heartbeat_age_seconds(self) -> float:
        return max((timezone.now() - self.last_pulled_at).total_seconds(), 0.0)

    @property
    def is_running(self) -> bool:
        return self.status == PullStatus.RUNNING and self.heartbeat_age_seconds <= stale_after().total_seconds()

    @property
    def is_stale(self) -> bool:
        return self.status == PullStatus.RUNNING and not self.is_running

    @property
    def state_label(self) -> str:
        if self.is_stale:
            return "stale"
        return self.get_status_display().lower()


class PullMark(models.Model):
    """Where an incremental pull continues next time: the new/updated pull's high-water mark, the capped
    pull's cursor. Moved only when the pull that earned it completed."""

    key = models.CharField(max_length=100, unique=True)
    value = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.key} = {self.value}"
