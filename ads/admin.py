"""Shopee ads in the admin: the seed's progress view as the shop list (stage, chunk x/y, progress %,
synced/total, minutes since the last chunk, failed chunks; filters stuck and failed), actions each guarded by
a permission of its own, and a shop page with charts of daily spend, GMV and ROAS."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from integrations.secrets import mask_secret
from jobs.display import decimal, number
from jobs.formatting import vnd
from jobs.models import StartedBy

from . import services
from .charts import shop_charts
from .models import (
    ACTIVE_STAGES,
    BudgetLog,
    BudgetSchedule,
    Campaign,
    CampaignDailyPerformance,
    Shop,
    Stage,
    SyncQueue,
    stuck_cutoff,
)

PERM_RESET, PERM_RETRY, PERM_ENQUEUE = "ads.reset_shop_sync", "ads.retry_failed_chunks", "ads.enqueue_shop_sync"


class StuckFilter(admin.SimpleListFilter):
    title, parameter_name = _("stuck"), "stuck"

    def lookups(self, request, model_admin):
        return [("yes", _("Stuck (no chunk progress for 30 min)"))]

    def queryset(self, request, queryset):
        if self.value() != "yes":
            return queryset
        return queryset.filter(progress__stage__in=ACTIVE_STAGES).annotate(
            beat=Coalesce("progress__last_chunk_at", "progress__started_at")).filter(
            Q(beat__lt=stuck_cutoff()) | Q(beat__isnull=True))


class FailedFilter(admin.SimpleListFilter):
    title, parameter_name = _("failed"), "failed"

    def lookups(self, request, model_admin):
        return [("yes", _("Failed or with failed chunks"))]

    def queryset(self, request, queryset):
        if self.value() != "yes":
            return queryset
        return queryset.filter(Q(progress__stage=Stage.FAILED) | Q(progress__chunks_failed__gt=0))


class ShopForm(forms.ModelForm):
    base_url = forms.URLField(assume_scheme="https", initial="https://partner.shopeemobile.com",
                              label=capfirst(_("base url")),
                              help_text=_("Shopee Open Platform host (the sandbox: http://127.0.0.1:8765/shopee)."))
    partner_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                  label=capfirst(_("partner key")),
                                  help_text=_("Leave empty to keep the stored key."))

    class Meta:
        model = Shop
        fields = ["shop_id", "name", "base_url", "partner_id", "partner_key", "enabled"]

    def clean_partner_key(self):
        value = self.cleaned_data.get("partner_key")
        if not value:
            if self.instance.pk:
                return self.instance.partner_key
            raise forms.ValidationError(gettext("A new shop needs the partner key."))
        return value


@admin.register(Shop)
class ShopAdmin(admin.ModelAdmin):
    form = ShopForm
    change_form_template = "admin/ads/shop/change_form.html"
    list_display = ("shop_id", "name", "enabled", "stage", "chunks", "progress_percent", "synced",
                    "minutes_since_last_chunk", "failed_chunk_count", "job_link")
    list_filter = (StuckFilter, FailedFilter, "enabled", "progress__stage")
    list_select_related = ("progress",)
    search_fields = ("=shop_id", "name")
    readonly_fields = ("masked_access_token", "masked_refresh_token", "token_expires_at", "token_refreshed_at",
                       "sync_error", "failed_chunks_detail")
    actions = ["enqueue_now", "retry_failed", "reset"]

    def _progress(self, obj):
        return getattr(obj, "progress", None)

    @admin.display(description=_("stage"))
    def stage(self, obj):
        p = self._progress(obj)
        if p is None:
            return Stage.IDLE.label
        label = p.get_stage_display()
        return gettext("%(stage)s (stuck)") % {"stage": label} if p.is_stuck else label

    @admin.display(description=_("chunk x/y"))
    def chunks(self, obj):
        p = self._progress(obj)
        return f"{p.chunks_finished}/{p.total_chunks}" if p else "—"

    @admin.display(description=_("progress %"))
    def progress_percent(self, obj):
        p = self._progress(obj)
        return f"{decimal(p.progress_percent)}%" if p else "—"

    @admin.display(description=_("synced/total"))
    def synced(self, obj):
        p = self._progress(obj)
        return f"{number(p.synced_campaigns)}/{number(p.total_campaigns)}" if p else "—"

    @admin.display(description=_("min since last chunk"))
    def minutes_since_last_chunk(self, obj):
        p = self._progress(obj)
        value = p.minutes_since_last_chunk if p else None
        return "—" if value is None else decimal(value)

    @admin.display(description=_("failed chunks"))
    def failed_chunk_count(self, obj):
        p = self._progress(obj)
        return len(p.failed_chunks) if p else 0

    @admin.display(description=_("job"))
    def job_link(self, obj):
        p = self._progress(obj)
        if not p or not p.job_id:
            return "—"
        return format_html('<a href="{}">#{}</a>', reverse("admin:jobs_backgroundjob_change", args=[p.job_id]),
                           p.job_id)

    @admin.display(description=_("access token"))
    def masked_access_token(self, obj):
        return mask_secret(obj.access_token) or "—"

    @admin.display(description=_("refresh token"))
    def masked_refresh_token(self, obj):
        return mask_secret(obj.refresh_token) or "—"

    @admin.display(description=_("last sync error"))
    def sync_error(self, obj):
        p = self._progress(obj)
        return (p.error_message if p else "") or "—"

    @admin.display(description=_("failed chunks"))
    def failed_chunks_detail(self, obj):
        p = self._progress(obj)
        if not p or not p.failed_chunks:
            return "—"
        return "; ".join(gettext("chunk %(index)s: %(error)s") % {"index": f["index"], "error": f["error"]}
                         for f in p.failed_chunks)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["charts"] = shop_charts(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- actions, each behind its own permission ---------------------------------------------------------
    def has_reset_shop_sync_permission(self, request):
        return request.user.has_perm(PERM_RESET)

    def has_retry_failed_chunks_permission(self, request):
        return request.user.has_perm(PERM_RETRY)

    def has_enqueue_shop_sync_permission(self, request):
        return request.user.has_perm(PERM_ENQUEUE)

    @admin.action(description=_("Enqueue a sync now"), permissions=["enqueue_shop_sync"])
    def enqueue_now(self, request, queryset):
        queued = [s for s in queryset if services.enqueue_shop(s, priority=services.sync.MANUAL_PRIORITY)]
        started = services.process_queue(started_by=StartedBy.USER)
        self.message_user(request, gettext("%(queued)d shop(s) queued; %(started)d run(s) started now (shops already "
                                           "syncing start after their current run).") % {"queued": len(queued),
                                                                                         "started": len(started)})

    @admin.action(description=_("Retry failed chunks"), permissions=["retry_failed_chunks"])
    def retry_failed(self, request, queryset):
        for shop in queryset:
            try:
                job = services.retry_failed_chunks(shop, user=request.user)
            except services.RunRefused as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, format_html(
                    gettext('Shop {}: failed chunks retried as <a href="{}">job #{}</a>.'), shop.shop_id,
                    reverse("admin:jobs_backgroundjob_change", args=[job.pk]), job.pk))

    @admin.action(description=_("Reset shop (back to idle, clear its pending entries)"),
                  permissions=["reset_shop_sync"])
    def reset(self, request, queryset):
        for shop in queryset:
            result = services.reset_shop(shop)
            self.message_user(request, gettext(
                "Shop %(shop)s reset: %(chunks)d open chunk(s) stopped, %(pending)d pending entr(ies) removed.") % {
                "shop": shop.shop_id, "chunks": result["chunks_failed"], "pending": result["pending_removed"]})


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(ReadOnly):
    list_display = ("campaign_id", "name", "shop", "ad_type", "status", "daily_budget_vnd", "synced_at")
    list_filter = ("ad_type", "status", "shop")
    search_fields = ("=campaign_id", "name")
    show_full_result_count = False

    @admin.display(description=_("daily budget"), ordering="daily_budget")
    def daily_budget_vnd(self, obj):
        return vnd(obj.daily_budget) or "—"


@admin.register(CampaignDailyPerformance)
class CampaignDailyPerformanceAdmin(ReadOnly):
    list_display = ("campaign", "date", "impressions", "clicks", "spend_vnd", "broad_gmv_vnd", "roas")
    list_filter = ("date",)
    search_fields = ("=campaign__campaign_id",)
    show_full_result_count = False

    @admin.display(description=_("spend"), ordering="spend")
    def spend_vnd(self, obj):
        return vnd(obj.spend)

    @admin.display(description=_("broad gmv"), ordering="broad_gmv")
    def broad_gmv_vnd(self, obj):
        return vnd(obj.broad_gmv)


@admin.register(SyncQueue)
class SyncQueueAdmin(ReadOnly):
    list_display = ("id", "shop", "sync_type", "is_chunk", "chunk_index", "status", "priority", "attempts",
                    "created_at", "finished_at", "seconds", "short_error")
    list_filter = ("status", "is_chunk", "sync_type")
    search_fields = ("=shop__shop_id", "=run_id")
    exclude = ("campaign_ids",)

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return obj.error[:120]


@admin.register(BudgetSchedule)
class BudgetScheduleAdmin(admin.ModelAdmin):
    list_display = ("__str__", "campaign", "days_of_week", "start_time", "end_time", "budget_vnd", "enabled",
                    "applied_occurrence", "previous_budget_vnd", "last_error")
    list_filter = ("enabled",)
    raw_id_fields = ("campaign",)
    readonly_fields = ("applied_occurrence", "previous_budget", "applied_at", "last_error")

    @admin.display(description=_("budget"), ordering="budget")
    def budget_vnd(self, obj):
        return vnd(obj.budget)

    @admin.display(description=_("previous budget"), ordering="previous_budget")
    def previous_budget_vnd(self, obj):
        return vnd(obj.previous_budget) or "—"


@admin.register(BudgetLog)
class BudgetLogAdmin(ReadOnly):
    list_display = ("created_at", "campaign", "action", "old_budget_vnd", "new_budget_vnd", "ok", "occurrence", "error")
    list_filter = ("action", "ok")

    @admin.display(description=_("old budget"), ordering="old_budget")
    def old_budget_vnd(self, obj):
        return vnd(obj.old_budget) or "—"

    @admin.display(description=_("new budget"), ordering="new_budget")
    def new_budget_vnd(self, obj):
        return vnd(obj.new_budget) or "—"
