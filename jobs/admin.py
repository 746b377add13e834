import json

from django.contrib import admin, messages
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from . import services
from .admin_pull import pull_view
from .display import job_display
from .models import ACTIVE_STATUSES, BackgroundJob, PullMark, PullProgress
from .pull_specs import get_spec, pull_specs
from .registry import job_type_choices


class JobTypeFilter(admin.SimpleListFilter):
    """Job types as the apps registered them, with their labels."""

    title = _("type")
    parameter_name = "type__exact"  # the URL the default filter used (bookmarks keep working)

    def lookups(self, request, model_admin):
        return job_type_choices()

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


def _cell(job: BackgroundJob, field: str, text: str):
    # data-* attributes let the dashboard's poll update this cell in place.
    return format_html('<span data-job="{}" data-field="{}">{}</span>', job.pk, field, text)


@admin.register(BackgroundJob)
class BackgroundJobAdmin(admin.ModelAdmin):
    list_display = (
        "id", "type_col", "status_col", "progress_col", "counts_col", "speed_col", "eta_col",
        "started_col", "elapsed_col", "heartbeat_col", "started_by_col",
    )
    list_display_links = ("id", "type_col")
    list_filter = (JobTypeFilter, "status", "started_by", ("created_at", admin.DateFieldListFilter))
    date_hierarchy = "created_at"
    search_fields = ("=id", "error")
    list_select_related = ("started_by_user",)
    list_per_page = 50
    show_full_result_count = False  # the job table only grows: no second COUNT(*) of all of it per view
    actions = ("cancel_jobs", "retry_jobs", "fail_stale")
    readonly_fields = (
        "type", "status_col", "progress_col", "counts_col", "speed_col", "eta_col", "started_col",
        "elapsed_col", "heartbeat_col", "started_by_col", "created_at", "completed_at", "retry_of",
        "cancel_requested", "celery_task_id", "params_pretty", "metadata_pretty", "error_pretty", "error_message_col",
    )
    fieldsets = (
        (None, {"fields": ("type", "status_col", "progress_col", "counts_col", "error_pretty")}),
        (_("Timing"), {"fields": (
            "created_at", "started_col", "elapsed_col", "speed_col", "eta_col", "heartbeat_col", "completed_at",
        )}),
        (_("Details"), {"fields": ("metadata_pretty", "params_pretty", "started_by_col", "retry_of",
                                "cancel_requested", "celery_task_id")}),
    )

    class Media:
        css = {"all": ("jobs/dashboard.css",)}
        js = ("jobs/dashboard.js",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Jobs are written by workers only; staff act on them through the actions.
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting a pending or running job would stop it behind the cancel permission's back (and orphan its
        # worker): that takes the cancel permission too. Finished jobs are history, deleted with the plain
        # delete permission. The delete view and the bulk action both ask here for every object.
        if obj is not None and obj.is_active and not request.user.has_perm("jobs.cancel_backgroundjob"):
            return False
        return super().has_delete_permission(request, obj)

    def has_cancel_permission(self, request):
        return request.user.has_perm("jobs.cancel_backgroundjob")

    def has_retry_permission(self, request):
        return request.user.has_perm("jobs.retry_backgroundjob")

    def get_queryset(self, request):
        # The change form shows who started the job and the job it retried: joined, not fetched one by one.
        return super().get_queryset(request).select_related("started_by_user", "retry_of")

    def changelist_view(self, request, extra_context=None):
        latest = BackgroundJob.objects.order_by("-pk").values_list("pk", flat=True).first()
        extra_context = {
            **(extra_context or {}), "jobs_poll_url": reverse("jobs:job-list"), "jobs_latest_id": latest or 0,
            "title": gettext("Job dashboard"),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "jobs_poll_url": reverse("jobs:job-list")}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    # --- columns ----------------------------------------------------------------------------------
    @admin.display(description=_("Type"), ordering="type")
    def type_col(self, job):
        return job.type_label

    @admin.display(description=_("Status"), ordering="status")
    def status_col(self, job):
        d = job_display(job)
        return format_html(
            '<span class="sb-badge sb-{}" data-job="{}" data-field="status" data-active="{}">{}</span>',
            d["status_class"], job.pk, int(job.is_active), d["status"],
        )

    @admin.display(description=_("Progress"))
    def progress_col(self, job):
        d = job_display(job)
        width = d["percent"] if d["percent"] is not None else 0
        indeterminate = " sb-indeterminate" if d["indeterminate"] else ""
        return format_html(
            '<div class="sb-progress{}" data-job="{}" data-field="bar"><div class="sb-bar" style="width:{}%"></div>'
            '</div><span data-job="{}" data-field="progress">{}</span>',
            indeterminate, job.pk, f"{width:.1f}", job.pk, d["progress"],
        )

    @admin.display(description=_("Successful / failed"))
    def counts_col(self, job):
        return _cell(job, "counts", job_display(job)["counts"])

    @admin.display(description=_("Speed"))
    def speed_col(self, job):
        return _cell(job, "speed", job_display(job)["speed"])

    @admin.display(description=_("ETA"))
    def eta_col(self, job):
        return _cell(job, "eta", job_display(job)["eta"])

    @admin.display(description=_("Started"), ordering="started_at")
    def started_col(self, job):
        return _cell(job, "started", job_display(job)["started"])

    @admin.display(description=_("Elapsed"))
    def elapsed_col(self, job):
        return _cell(job, "elapsed", job_display(job)["elapsed"])

    @admin.display(description=_("Heartbeat"))
    def heartbeat_col(self, job):
        return _cell(job, "heartbeat", job_display(job)["heartbeat"])

    @admin.display(description=_("Started by"), ordering="started_by")
    def started_by_col(self, job):
        return job.started_by_label

    @admin.display(description=_("Metadata"))
    def metadata_pretty(self, job):
        return format_html('<pre class="sb-json">{}</pre>', json.dumps(job.metadata, indent=2, ensure_ascii=False))

    @admin.display(description=_("Parameters"))
    def params_pretty(self, job):
        return format_html('<pre class="sb-json">{}</pre>', json.dumps(job.params, indent=2, ensure_ascii=False))

    @admin.display(description=_("Error"))
    def error_pretty(self, job):
        if not job.error:
            return "—"
        return format_html('<pre class="sb-error">{}</pre>', job.error)

    @admin.display(description=_("Error"))
    def error_message_col(self, job):
        return job.error.split("\n", 1)[0] if job.error else "—"

    def get_fieldsets(self, request, obj=None):
        # Stored tracebacks (file paths, code) are for superusers; other staff read the message, as on /api/jobs/.
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [(name, {**opts, "fields": tuple("error_message_col" if f == "error_pretty" else f
                                                for f in opts["fields"])}) for name, opts in fieldsets]

    # --- actions ----------------------------------------------------------------------------------
    @admin.action(description=_("Cancel selected jobs"), permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        done = sum(services.cancel_job(job) for job in queryset.filter(status__in=ACTIVE_STATUSES))
        skipped = queryset.count() - done
        self.message_user(request, gettext("Cancel requested for %(n)d job(s); running ones stop at their next "
                                           "batch.") % {"n": done})
        if skipped:
            self.message_user(request, gettext("%(n)d job(s) had already finished.") % {"n": skipped}, messages.WARNING)

    @admin.action(description=_("Retry selected jobs (same parameters)"), permissions=["retry"])
    def retry_jobs(self, request, queryset):
        for job in queryset.exclude(status__in=ACTIVE_STATUSES):
            if not services.may_start(request.user, job.type, job.params):
                self.message_user(request,
                                  gettext("Job #%(id)s not retried: you may not start %(type)s jobs.") % {"id": job.pk,
                                                                                        "type": job.type_label},
                                  messages.ERROR)
                continue
            try:
                new = services.retry_job(job, user=request.user)
            except services.PullRefused as exc:
                self.message_user(request,
                                  gettext("Job #%(id)s not retried: %(error)s") % {"id": job.pk,
                                                                                   "error": exc}, messages.ERROR)
            else:
                self.message_user(request,
                                  gettext("Job #%(id)s retried as job #%(new)s.") % {"id": job.pk, "new": new.pk})
        if queryset.filter(status__in=ACTIVE_STATUSES).exists():
            self.message_user(request, gettext("Running or pending jobs are not retried."), messages.WARNING)

    @admin.action(description=_("Mark stale jobs as failed"), permissions=["cancel"])
    def fail_stale(self, request, queryset):
        n = services.fail_stale_jobs(queryset)
        self.message_user(request, gettext("%(n)d stale job(s) marked as failed.") % {"n": n})


@admin.register(PullProgress)
class PullProgressAdmin(admin.ModelAdmin):
    list_display = ("progress_id", "system", "kind", "state_col", "items_done", "job_link", "started_at",
                    "heartbeat_col", "completed_at")
    list_filter = ("system", "kind", "status")
    search_fields = ("progress_id",)
    actions = ("reset", "force_restart")
    readonly_fields = [f.name for f in PullProgress._meta.fields] + ["state_col", "job_link"]
    change_list_template = "admin/jobs/pullprogress/change_list.html"

    def get_urls(self):
        def start(request, system, kind):
            return pull_view(request, get_spec(system, kind), back_url=reverse("admin:jobs_pullprogress_changelist"),
                             opts=self.model._meta, admin_site=self.admin_site)

        return [path("start/<str:system>/<str:kind>/", self.admin_site.admin_view(start),
                     name="jobs_pullprogress_start")] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        startable = [(s, reverse("admin:jobs_pullprogress_start", args=s.key)) for s in pull_specs()
                     if request.user.has_perm(s.permission)]
        return super().changelist_view(request, extra_context={**(extra_context or {}), "startable": startable})
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("job")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting a pull's progress drops its claim and checkpoint: it is a reset, so it takes reset_pull
        # as well (for the delete view and the bulk action alike; both ask here).
        return super().has_delete_permission(request, obj) and request.user.has_perm("jobs.reset_pull")

    def has_reset_permission(self, request):
        return request.user.has_perm("jobs.reset_pull")

    def has_force_restart_permission(self, request):
        return request.user.has_perm("jobs.force_restart_pull")

    @admin.display(description=_("State"), ordering="status")
    def state_col(self, p):
        label = p.state_label
        cls = {"running": "running", "stale": "stale", "completed": "completed"}.get(label, "failed")
        return format_html('<span class="sb-badge sb-{}">{}</span>', cls, p.state_display)

    @admin.display(description=_("Heartbeat"), ordering="last_pulled_at")
    def heartbeat_col(self, p):
        from .display import duration

        return gettext("%(duration)s ago") % {"duration": duration(p.heartbeat_age_seconds)}

    @admin.display(description=_("Job"))
    def job_link(self, p):
        if not p.job_id:
            return "—"
        url = reverse("admin:jobs_backgroundjob_change", args=[p.job_id])
        return format_html('<a href="{}">#{}</a>', url, p.job_id)

    @admin.action(description=_("Reset (delete progress and checkpoint)"), permissions=["reset"])
    def reset(self, request, queryset):
        n = services.reset_pulls(progress_ids=queryset.values_list("progress_id", flat=True))
        self.message_user(request, gettext("Reset %(n)d pull(s). A worker still running one stops at its next "
                                           "batch.") % {"n": n})

    @admin.action(description=_("Force restart (start again from the beginning)"), permissions=["force_restart"])
    def force_restart(self, request, queryset):
        for p in queryset.select_related("job"):
            if p.job_id is None:
                self.message_user(request, gettext("%(pull)s: no job to restart from.") % {"pull": p.progress_id},
                                  messages.WARNING)
                continue
            if not services.may_start(request.user, p.job.type, p.job.params):
                self.message_user(request,
                                  gettext("%(pull)s: you may not start %(type)s jobs.") % {"pull": p.progress_id,
                                                                                  "type": p.job.type_label},
                                  messages.ERROR)
                continue
            try:
                new = services.retry_job(p.job, user=request.user, force_restart=True)
            except services.PullRefused as exc:
                self.message_user(request, f"{p.progress_id}: {exc}", messages.ERROR)
            else:
                self.message_user(request,
                                  gettext("%(pull)s restarted as job #%(new)s.") % {"pull": p.progress_id,
                                                                                    "new": new.pk})


@admin.register(PullMark)
class PullMarkAdmin(admin.ModelAdmin):
    """Where incremental and capped pulls continue; written by pulls only."""

    list_display = ("key", "value", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting a mark moves where an incremental pull continues from: a reset, like the checkpoint's.
        return super().has_delete_permission(request, obj) and request.user.has_perm("jobs.reset_pull")

    def has_change_permission(self, request, obj=None):
        return False
