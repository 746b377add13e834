from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from jobs.formatting import vnd
from jobs.models import StartedBy

from . import search
from .admin import PHONE_SEARCH_HELP
from .models import AmbiguousMatch, CustomerMapping, LoyaltyTier, NhanhCustomer, ShopifyCustomer
from .services.matching import MappingError, match_manually, start_auto_match, unmatch
from .services.sync import start_sync

RUN_AUTOMATCH = "customers.run_automatch"
SYNC = "customers.sync_to_shopify"


def _job_message(request, job, what: str):
    url = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
    messages.success(request, format_html(gettext('{} started as <a href="{}">job #{}</a>.'), what, url, job.pk))


class MatchForm(forms.Form):
    nhanh_id = forms.IntegerField(label=_("Nhanh customer id"), help_text=_("The id in Nhanh (not our row id)."))
    shopify_id = forms.IntegerField(label=_("Shopify customer id"), help_text=_("The number at the end of the gid."))

    def clean(self):
        data = super().clean()
        self.nhanh = NhanhCustomer.objects.filter(nhanh_id=data.get("nhanh_id")).first()
        self.shopify = ShopifyCustomer.objects.filter(shopify_id=data.get("shopify_id")).first()
        if self.nhanh is None:
            self.add_error("nhanh_id", gettext("No pulled Nhanh customer has this id; pull it first."))
        if self.shopify is None:
            self.add_error("shopify_id", gettext("No pulled Shopify customer has this id; pull it first."))
        return data


@admin.register(CustomerMapping)
class CustomerMappingAdmin(admin.ModelAdmin):
    list_display = ("nhanh_col", "shopify_col", "is_active", "matched_by", "matched_phone", "sync_status",
                    "synced_at", "last_sent_total_col", "last_sent_tier", "sync_attempts", "error_col")
    list_filter = ("matched_by", "sync_status", "is_active")
    search_fields = ("nhanh_customer__name", "nhanh_customer__mobile", "nhanh_customer__email",
                     "=nhanh_customer__nhanh_id", "shopify_customer__first_name", "shopify_customer__last_name",
                     "shopify_customer__email", "shopify_customer__phone", "=shopify_customer__shopify_id",
                     "matched_phone")
    search_help_text = PHONE_SEARCH_HELP
    list_select_related = ("nhanh_customer", "shopify_customer")
    raw_id_fields = ("nhanh_customer", "shopify_customer", "matched_by_user")
    actions = ("sync_selected", "unmatch_selected")
    show_full_result_count = False
    list_per_page = 50
    paginator = search.EstimatedCountPaginator
    # Newest first by id, which follows matched_at (rows are inserted as they are matched) and is indexed:
    # ordering by matched_at would sort every mapping on each page view.
    ordering = ("-pk",)

    def get_queryset(self, request):
        # The change form shows both customers and the user who matched them: one query, not four.
        return super().get_queryset(request).select_related("nhanh_customer", "shopify_customer",
                                                            "matched_by_user")

    def get_search_results(self, request, queryset, search_term):
        # Either side's phones (any format), folded names and emails, ids: indexed lookups per side.
        if not search_term.strip():
            return queryset, False
        return search.search_mappings(queryset, search_term), False

    def has_add_permission(self, request):
        return False  # matches come from auto-match or the "Match manually" form

    def has_change_permission(self, request, obj=None):
        return False

    def has_sync_permission(self, request):
        return request.user.has_perm(SYNC)

    def has_unmatch_permission(self, request):
        return request.user.has_perm("customers.change_customermapping")

    @admin.display(description=_("Nhanh customer"), ordering="nhanh_customer__name")
    def nhanh_col(self, m):
        return f"{m.nhanh_customer.name} (#{m.nhanh_customer.nhanh_id}, {vnd(m.nhanh_customer.total_spent)})"

    @admin.display(description=_("last sent total"), ordering="last_sent_total")
    def last_sent_total_col(self, m):
        return vnd(m.last_sent_total) or "—"

    @admin.display(description=_("Shopify customer"), ordering="shopify_customer__last_name")
    def shopify_col(self, m):
        return str(m.shopify_customer)

    @admin.display(description=_("Last error"))
    def error_col(self, m):
        return (m.last_error[:120] + "…") if len(m.last_error) > 120 else m.last_error

    @admin.action(description=_("Sync selected to Shopify (forced)"), permissions=["sync"])
    def sync_selected(self, request, queryset):
        ids = list(queryset.filter(is_active=True).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, gettext("None of the selected mappings is active."), messages.WARNING)
            return
        _job_message(request, start_sync(scope="ids", ids=ids, started_by=StartedBy.USER, user=request.user),
                     gettext("Sync of %(n)d customer(s)") % {"n": len(ids)})

    @admin.action(description=_("Unmatch selected (auto-match will leave them alone)"), permissions=["unmatch"])
    def unmatch_selected(self, request, queryset):
        n = unmatch(list(queryset), user=request.user)
        self.message_user(request, gettext("Unmatched %(n)d pair(s).") % {"n": n})

    # --- buttons ------------------------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("automatch/", view(require_POST(self.automatch_view)), name="customers_customermapping_automatch"),
            path("dry-run/", view(require_POST(self.dry_run_view)), name="customers_customermapping_dry_run"),
            path("sync-all/", view(require_POST(self.sync_all_view)), name="customers_customermapping_sync_all"),
            path("retry-failed/", view(require_POST(self.retry_failed_view)),
                 name="customers_customermapping_retry_failed"),
            path("match/", view(self.match_view), name="customers_customermapping_match"),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        buttons = []
        if request.user.has_perm(RUN_AUTOMATCH):
            buttons += [{"url": reverse("admin:customers_customermapping_automatch"),
                         "label": gettext("Auto-match now"),
                         "title": gettext("Match unmapped customers by phone")},
                        {"url": reverse("admin:customers_customermapping_dry_run"), "label": gettext("Dry run"),
                         "title": gettext("Report what auto-match would create, without writing")}]
        if request.user.has_perm(SYNC):
            buttons += [{"url": reverse("admin:customers_customermapping_sync_all"),
                         "label": gettext("Sync all matched"),
                         "title": gettext("Send total spent and tier of every matched customer")},
                        {"url": reverse("admin:customers_customermapping_retry_failed"),
                         "label": gettext("Retry failed"),
                         "title": gettext("Send again only the customers whose last sync failed")}]
        extra_context = {**(extra_context or {}), "post_buttons": buttons,
                         "can_match": request.user.has_perm("customers.add_customermapping")}
        return super().changelist_view(request, extra_context=extra_context)

    def _back(self):
        return redirect(reverse("admin:customers_customermapping_changelist"))

    def automatch_view(self, request):
        if not request.user.has_perm(RUN_AUTOMATCH):
            raise PermissionDenied
        _job_message(request, start_auto_match(started_by=StartedBy.USER, user=request.user), gettext("Auto-match"))
        return self._back()

    def dry_run_view(self, request):
        if not request.user.has_perm(RUN_AUTOMATCH):
            raise PermissionDenied
        job = start_auto_match(dry_run=True, started_by=StartedBy.USER, user=request.user, run_now=True)
        m = job.metadata
        messages.info(request, gettext(
            "Dry run (job #%(id)s): would match %(matched)s, %(ambiguous)s ambiguous, %(no_phone)s without a phone, "
            "%(no_candidate)s without a candidate. Nothing was written.") % {
            "id": job.pk, "matched": m.get("matched", 0), "ambiguous": m.get("ambiguous", 0),
            "no_phone": m.get("skipped_no_phone", 0), "no_candidate": m.get("no_candidate", 0)})
        return self._back()

    def sync_all_view(self, request):
        if not request.user.has_perm(SYNC):
            raise PermissionDenied
        _job_message(request, start_sync(scope="all", started_by=StartedBy.USER, user=request.user),
                     gettext("Sync of all matched customers"))
        return self._back()

    def retry_failed_view(self, request):
        if not request.user.has_perm(SYNC):
            raise PermissionDenied
        _job_message(request, start_sync(scope="failed", started_by=StartedBy.USER, user=request.user),
                     gettext("Retry of failed syncs"))
        return self._back()

    def match_view(self, request):
        if not request.user.has_perm("customers.add_customermapping"):
            raise PermissionDenied
        form = MatchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                match_manually(form.nhanh.pk, form.shopify.pk, user=request.user)
            except MappingError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, gettext("Matched %(nhanh)s with %(shopify)s.") % {"nhanh": form.nhanh,
                                                                                           "shopify": form.shopify})
                return self._back()
        return TemplateResponse(request, "admin/customers/match.html", {
            **self.admin_site.each_context(request), "title": gettext("Match customers manually"), "form": form,
            "opts": self.model._meta})


def _customer_links(customers) -> str:
    return format_html_join(", ", '<a href="{}">{}</a>', (
        (reverse(f"admin:customers_{c._meta.model_name}_change", args=[c.pk]), c) for c in customers))


class AmbiguousMatchChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        attach_candidates(self.result_list)


def attach_candidates(matches) -> None:
    """Load every Shopify candidate and Nhanh rival of ``matches`` in two queries (their ids are JSON lists,
    which prefetch_related cannot follow) and hang them on each match for the columns."""
    matches = list(matches)  # evaluates the page's queryset in place: the template reuses its cache
    shopify_ids = {pk for a in matches for pk in a.shopify_candidates}
    nhanh_ids = {pk for a in matches for pk in a.nhanh_rivals}
    shopify = ShopifyCustomer.objects.in_bulk(shopify_ids) if shopify_ids else {}
    nhanh = NhanhCustomer.objects.in_bulk(nhanh_ids) if nhanh_ids else {}
    for a in matches:
        a.candidate_rows = [shopify[pk] for pk in sorted(a.shopify_candidates) if pk in shopify]
        a.rival_rows = [nhanh[pk] for pk in sorted(a.nhanh_rivals) if pk in nhanh]


@admin.register(AmbiguousMatch)
class AmbiguousMatchAdmin(admin.ModelAdmin):
    """Why auto-match left these alone; staff decide with "Match manually" on the mappings page."""

    list_display = ("nhanh_customer", "phones_col", "candidates_col", "rivals_col", "detected_at")
    search_fields = ("nhanh_customer__name", "nhanh_customer__mobile", "=nhanh_customer__nhanh_id")
    search_help_text = PHONE_SEARCH_HELP
    list_select_related = ("nhanh_customer",)
    readonly_fields = ("candidates_col", "rivals_col")
    show_full_result_count = False
    list_per_page = 50
    paginator = search.EstimatedCountPaginator

    def get_changelist(self, request, **kwargs):
        return AmbiguousMatchChangeList

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("nhanh_customer")

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            attach_candidates([obj])
        return obj

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return search.search_ambiguous_matches(queryset, search_term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("Phones"))
    def phones_col(self, a):
        return ", ".join(a.phones)

    @admin.display(description=_("Shopify customers with that phone"))
    def candidates_col(self, a):
        return _customer_links(a.candidate_rows)

    @admin.display(description=_("Other Nhanh customers claiming them"))
    def rivals_col(self, a):
        return _customer_links(a.rival_rows) or "—"


@admin.register(LoyaltyTier)
class LoyaltyTierAdmin(admin.ModelAdmin):
    list_display = ("name", "min_total", "min_total_vnd")
    list_editable = ("min_total",)
    list_display_links = ("name",)

    @admin.display(description=_("lowest total"), ordering="min_total")
    def min_total_vnd(self, tier):
        return vnd(tier.min_total)
