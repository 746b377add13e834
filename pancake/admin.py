"""Pancake in the admin: pages (tokens write-only, masked; pull buttons), customers (with their linked Nhanh
customer, its Shopify match and total spent), ambiguous links, and the Nhanh customer's Pancake chats (an inline
appended to customers' NhanhCustomerAdmin from here, so customers never imports pancake)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from customers.models import NhanhCustomer
from integrations.secrets import mask_secret
from jobs.admin_pull import PullButtonsMixin
from jobs.formatting import vnd
from jobs.models import StartedBy

from .models import PancakeAmbiguousLink, PancakeCustomer, PancakeCustomerPhone, PancakeNhanhLink, PancakePage
from .services.linking import start_link

RUN_LINK = "pancake.run_pancake_link"


class PancakePageForm(forms.ModelForm):
    """Tokens are write-only: never sent back to the browser; an empty box keeps the stored value."""

    page_access_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                        label=capfirst(_("page access token")))
    user_access_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                        label=capfirst(_("user access token")))

    class Meta:
        model = PancakePage
        fields = ("page_id", "name", "enabled", "page_access_token", "user_access_token")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in PancakePage.SECRET_FIELDS:
            current = getattr(self.instance, name, "")
            self.fields[name].help_text = (gettext("Stored: %(masked)s. Leave empty to keep it.")
                                           % {"masked": mask_secret(current)} if current else gettext("Not set."))

    def clean(self):
        data = super().clean()
        for name in PancakePage.SECRET_FIELDS:
            if not data.get(name) and self.instance.pk:
                data[name] = getattr(self.instance, name)
        return data


@admin.register(PancakePage)
class PancakePageAdmin(PullButtonsMixin, admin.ModelAdmin):
    pull_spec = ("pancake", "customers")
    form = PancakePageForm
    list_display = ("page_id", "name", "enabled", "page_token", "token_renewed_at", "customers_count")
    list_filter = ("enabled",)
    readonly_fields = ("token_renewed_at", "incremental_floor", "backfill_ceiling")

    @admin.display(description=_("Page token"))
    def page_token(self, obj):
        return mask_secret(obj.page_access_token) or "—"

    @admin.display(description=_("Customers"))
    def customers_count(self, obj):
        return obj.customers.count()


class PhoneInline(admin.TabularInline):
    model = PancakeCustomerPhone
    extra = 0
    can_delete = False
    readonly_fields = ("e164",)


@admin.register(PancakeCustomer)
class PancakeCustomerAdmin(admin.ModelAdmin):
    list_display = ("psid", "name", "page", "phones_typed", "nhanh_customer", "shopify_match", "total_spent",
                    "upstream_updated_at")
    list_filter = ("page", ("nhanh_link", admin.EmptyFieldListFilter))
    search_fields = ("=psid", "name", "phones__e164")
    list_select_related = ("page", "nhanh_link__nhanh_customer__mapping__shopify_customer")
    inlines = [PhoneInline]
    show_full_result_count = False
    change_list_template = "admin/jobs/change_list_pull.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def _nhanh(self, obj):
        link = getattr(obj, "nhanh_link", None)
        return link.nhanh_customer if link else None

    @admin.display(description=_("Phones"))
    def phones_typed(self, obj):
        return ", ".join(obj.phone_numbers)

    @admin.display(description=_("Nhanh customer"))
    def nhanh_customer(self, obj):
        nhanh = self._nhanh(obj)
        if nhanh is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:customers_nhanhcustomer_change", args=[nhanh.pk]),
                           nhanh)

    @admin.display(description=_("Shopify match"))
    def shopify_match(self, obj):
        nhanh = self._nhanh(obj)
        mapping = getattr(nhanh, "mapping", None) if nhanh else None
        if mapping is None or not mapping.is_active:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:customers_shopifycustomer_change",
                                                          args=[mapping.shopify_customer_id]), mapping.shopify_customer)

    @admin.display(description=_("Total spent"))
    def total_spent(self, obj):
        nhanh = self._nhanh(obj)
        return vnd(nhanh.total_spent) if nhanh else "—"

    def get_urls(self):
        urls = [path("link/", self.admin_site.admin_view(self.link_view), name="pancake_pancakecustomer_link")]
        return urls + super().get_urls()

    def link_view(self, request):
        if not request.user.has_perm(RUN_LINK):
            raise PermissionDenied
        if request.method != "POST":
            return TemplateResponse(request, "admin/pancake/link.html", {
                **self.admin_site.each_context(request), "title": gettext("Link Pancake ↔ Nhanh customers"),
                "opts": self.model._meta})
        dry_run = bool(request.POST.get("dry_run"))
        job = start_link(dry_run=dry_run, started_by=StartedBy.USER, user=request.user, run_now=dry_run)
        url = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
        if dry_run:
            meta = job.metadata
            messages.success(request, format_html(
                gettext('Dry run (<a href="{}">job #{}</a>): would link {}; {} ambiguous.'), url, job.pk,
                meta.get("linked"),
                meta.get("ambiguous")))
        else:
            messages.success(request, format_html(gettext('Linking started as <a href="{}">job #{}</a>.'), url, job.pk))
        return redirect("admin:pancake_pancakecustomer_changelist")

    def changelist_view(self, request, extra_context=None):
        buttons = []
        if request.user.has_perm(RUN_LINK):
            link = reverse("admin:pancake_pancakecustomer_link")
            buttons = [{"url": link, "label": gettext("Link to Nhanh customers by phone")}]
        extra_context = {**(extra_context or {}), "can_run_pull": False, "extra_buttons": buttons}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(PancakeAmbiguousLink)
class PancakeAmbiguousLinkAdmin(admin.ModelAdmin):
    list_display = ("pancake_customer", "phones", "nhanh_candidates", "detected_at")
    list_select_related = ("pancake_customer",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PancakeChatsInline(admin.TabularInline):
    """On the Nhanh customer: the Pancake chat partners linked to it."""

    model = PancakeNhanhLink
    fk_name = "nhanh_customer"
    verbose_name = verbose_name_plural = _("Pancake chats")
    extra = 0
    can_delete = False
    fields = ("chat", "page", "matched_phone", "matched_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("pancake_customer__page")

    @admin.display(description=_("Pancake customer"))
    def chat(self, obj):
        c = obj.pancake_customer
        return format_html('<a href="{}">{}</a>', reverse("admin:pancake_pancakecustomer_change", args=[c.pk]), c)

    @admin.display(description=_("Page"))
    def page(self, obj):
        return obj.pancake_customer.page


def _append_chats_inline() -> None:
    nhanh_admin = admin.site._registry.get(NhanhCustomer)
    if nhanh_admin is not None and PancakeChatsInline not in nhanh_admin.inlines:
        nhanh_admin.inlines = [*nhanh_admin.inlines, PancakeChatsInline]


_append_chats_inline()
