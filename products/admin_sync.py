"""The sync side of the products admin: actions and buttons on product mappings (sync selected / sync all / retry
failed) and the Nhanh webhook deliveries. ``ProductMappingAdmin`` (products/admin.py) mixes
``ProductSyncAdminMixin`` in: its ``get_urls`` and ``changelist_view`` call ``super()``, and its template renders
``post_buttons`` (a list of {url, label, title}) as POST forms."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from jobs.models import StartedBy

from .models import NhanhWebhookDelivery
from .services.sync import start_product_sync

SYNC = "products.sync_products"


def _job_message(request, job, what: str) -> None:
    url = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
    messages.success(request, format_html(gettext('{} started as <a href="{}">job #{}</a>.'), what, url, job.pk))


class ProductSyncAdminMixin:
    """Stock (and price) sync from the mapping list. Every entry point checks ``products.sync_products``."""

    sync_actions = ("sync_selected",)  # add to the admin's ``actions``

    def has_sync_permission(self, request):
        return request.user.has_perm(SYNC)

    @admin.action(description=_("Sync stock of selected to Shopify"), permissions=["sync"])
    def sync_selected(self, request, queryset):
        ids = list(queryset.filter(is_active=True).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, gettext("None of the selected mappings is active."), messages.WARNING)
            return
        _job_message(request, start_product_sync(scope="ids", ids=ids, started_by=StartedBy.USER,
                                                 user=request.user),
                     gettext("Stock sync of %(n)d product(s)") % {"n": len(ids)})

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("sync-all/", view(require_POST(self.sync_all_view)), name="products_productmapping_sync_all"),
            path("retry-failed/", view(require_POST(self.retry_failed_view)),
                 name="products_productmapping_retry_failed"),
        ] + super().get_urls()

    def sync_buttons(self, request) -> list[dict]:
        if not request.user.has_perm(SYNC):
            return []
        return [{"url": reverse("admin:products_productmapping_sync_all"), "label": _("Sync all"),
                 "title": _("Send every mapped product's stock levels that differ from Shopify's")},
                {"url": reverse("admin:products_productmapping_retry_failed"), "label": _("Retry failed"),
                 "title": _("Send again the products whose last sync failed (and pushes left unanswered)")}]

    def changelist_view(self, request, extra_context=None):
        # The mapping admin may already have added ``sync_buttons`` to its own: never twice.
        extra_context = dict(extra_context or {})
        buttons = list(extra_context.get("post_buttons", []))
        present = {str(b["url"]) for b in buttons}
        buttons += [b for b in self.sync_buttons(request) if str(b["url"]) not in present]
        extra_context["post_buttons"] = buttons
        return super().changelist_view(request, extra_context=extra_context)

    def _back_to_mappings(self):
        return redirect(reverse("admin:products_productmapping_changelist"))

    def sync_all_view(self, request):
        if not request.user.has_perm(SYNC):
            raise PermissionDenied
        _job_message(request, start_product_sync(scope="all", started_by=StartedBy.USER, user=request.user),
                     gettext("Stock sync of all mapped products"))
        return self._back_to_mappings()

    def retry_failed_view(self, request):
        if not request.user.has_perm(SYNC):
            raise PermissionDenied
        _job_message(request, start_product_sync(scope="failed", started_by=StartedBy.USER, user=request.user),
                     gettext("Retry of failed product syncs"))
        return self._back_to_mappings()


@admin.register(NhanhWebhookDelivery)
class NhanhWebhookDeliveryAdmin(admin.ModelAdmin):
    """Read-only: what Nhanh sent and what became of it."""

    list_display = ("received_at", "event", "business_id", "outcome", "products_col", "detail_col", "processed_at")
    list_filter = ("outcome", "event")
    search_fields = ("digest", "detail")
    date_hierarchy = "received_at"
    readonly_fields = ("event", "business_id", "received_at", "digest", "is_first", "outcome", "detail",
                       "product_ids", "payload", "processed_at")
    actions = None

    @admin.display(description=_("products"))
    def products_col(self, d):
        ids = d.product_ids or []
        return ", ".join(map(str, ids[:5])) + (f" … (+{len(ids) - 5})" if len(ids) > 5 else "")

    @admin.display(description=_("detail"))
    def detail_col(self, d):
        return (d.detail[:120] + "…") if len(d.detail) > 120 else d.detail

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
