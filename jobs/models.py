"""Job tracking: every long operation is a BackgroundJob; every pull is guarded by a PullProgress row.

This app knows nothing of the apps that use it: they register handlers (see ``jobs.registry``).
"""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


def stale_after() -> timedelta:
    return timedelta(seconds=settings.SHOPBRIDGE["STALE_AFTER_SECONDS"])


class JobStatus(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    RUNNING = "RUNNING", _("Running")
    COMPLETED = "COMPLETED", _("Completed")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class StartedBy(models.TextChoices):
    USER = "user", _("User")
    BEAT = "beat", _("Schedule (beat)")
    COMMAND = "command", _("Command")
    SYSTEM = "system", _("System")


class BackgroundJob(models.Model):
    # One of the types apps register (jobs.registry); validated when a job is created, no choices here, so a
    # new type needs no migration of this app.
    type = models.CharField(verbose_name=_("type"), max_length=40, db_index=True)
    status = models.CharField(verbose_name=_("status"), max_length=12, choices=JobStatus.choices,
                              default=JobStatus.PENDING, db_index=True)
    total = models.PositiveIntegerField(verbose_name=_("total"), null=True, blank=True,
                                        help_text=_("Empty while unknown."))
    processed = models.PositiveIntegerField(verbose_name=_("processed"), default=0)
    successful = models.PositiveIntegerField(verbose_name=_("successful"), default=0)
    failed = models.PositiveIntegerField(verbose_name=_("failed"), default=0)
    metadata = models.JSONField(verbose_name=_("metadata"), default=dict, blank=True)
    # What the registered handler needs to run this job (again, for retry).
    params = models.JSONField(verbose_name=_("params"), default=dict, blank=True)
    error = models.TextField(verbose_name=_("error"), blank=True)
    cancel_requested = models.BooleanField(verbose_name=_("cancel requested"), default=False)
    # Set when the worker running the job is shutting down (SIGTERM): the job stops at its next batch and is
    # handed back to the queue to continue elsewhere.
    handback_requested = models.BooleanField(verbose_name=_("handback requested"), default=False)
    # Runs started: 1 for the first, +1 for each rescue after its worker died. The run that claimed the job
    # with this number is the only one whose progress is written; an older one learns it was superseded.
    attempts = models.PositiveSmallIntegerField(verbose_name=_("attempts"), default=0)
    worker = models.CharField(verbose_name=_("worker"), max_length=200, blank=True,
                              help_text=_("Celery worker running the job."))
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now, db_index=True)
    started_at = models.DateTimeField(verbose_name=_("started at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(verbose_name=_("heartbeat at"), null=True, blank=True)
    completed_at = models.DateTimeField(verbose_name=_("completed at"), null=True, blank=True)
    started_by = models.CharField(verbose_name=_("started by"), max_length=10, choices=StartedBy.choices,
                                  default=StartedBy.SYSTEM)
    started_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("started by user"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+"
    )
    retry_of = models.ForeignKey("self", verbose_name=_("retry of"), null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="retries")
    celery_task_id = models.CharField(verbose_name=_("celery task id"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("background job")
        verbose_name_plural = _("background jobs")
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
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


class PullProgress(models.Model):
    """One row per progress id: who holds the pull, its heartbeat and the checkpoint to resume from.

    A pull is "running" while ``status`` is running AND its heartbeat is younger than the stale window.
    ``run_token`` names the current holder; a force restart or takeover hands out a new token, and
    the old worker learns it lost the pull at its next heartbeat.
    """

    progress_id = models.CharField(verbose_name=_("progress id"), max_length=120, unique=True)
    system = models.CharField(verbose_name=_("system"), max_length=20, db_index=True)
    kind = models.CharField(verbose_name=_("kind"), max_length=20, db_index=True)
    filters = models.JSONField(verbose_name=_("filters"), default=dict, blank=True)
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=PullStatus.choices,
                              default=PullStatus.RUNNING)
    run_token = models.UUIDField(verbose_name=_("run token"), default=uuid.uuid4)
    job = models.ForeignKey(BackgroundJob, verbose_name=_("job"), null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="+")
    checkpoint = models.JSONField(verbose_name=_("checkpoint"), default=dict, blank=True,
                                  help_text=_("Cursor or page reached; a resume starts here."))
    items_done = models.PositiveIntegerField(verbose_name=_("items done"), default=0,
                                             help_text=_("Rows pulled so far in this run."))
    started_at = models.DateTimeField(verbose_name=_("started at"), default=timezone.now)
    last_pulled_at = models.DateTimeField(verbose_name=_("last pulled at"), default=timezone.now,
                                          help_text=_("Heartbeat, beaten on every batch."))
    completed_at = models.DateTimeField(verbose_name=_("completed at"), null=True, blank=True)
    error = models.TextField(verbose_name=_("error"), blank=True)

    class Meta:
        ordering = ["-last_pulled_at"]
        verbose_name = _("pull progress")
        verbose_name_plural = _("pull progress")
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
        """The state's code (running, stale, completed, failed, cancelled): CSS classes and the JSON API."""
        return "stale" if self.is_stale else self.status

    @property
    def state_display(self) -> str:
        """The state as staff read it, in their language."""
        return gettext("stale") if self.is_stale else str(self.get_status_display()).lower()


class PullMark(models.Model):
    """Where an incremental pull continues next time: the new/updated pull's high-water mark, the capped
    pull's cursor. Moved only when the pull that earned it completed."""

    key = models.CharField(verbose_name=_("key"), max_length=100, unique=True)
    value = models.JSONField(verbose_name=_("value"), default=dict)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("pull mark")
        verbose_name_plural = _("pull marks")

    def __str__(self):
        return f"{self.key} = {self.value}"
