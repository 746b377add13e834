"""The products admin: both catalogs (with stock per depot / per location), locations, the depot → location map,
product mappings (match manually, unmatch, auto-match and its dry run; the sync side's actions come from
``ProductSyncAdminMixin``) and ambiguous SKUs. Lists select or prefetch what their columns show: no query per row."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from customers.admin import PullButtonsAdmin, ReadOnlyAdmin
from jobs.models import StartedBy

from .admin_sync import ProductSyncAdminMixin
from .models import (
    AmbiguousSku,
    NhanhDepot,
    NhanhProduct,
    NhanhStock,
    ProductMapping,
    ShopifyInventoryLevel,
    ShopifyLocation,
    ShopifyProduct,
    ShopifyVariant,
    sku_key,
)
from .services.automatch import PERMISSION as RUN_AUTOMATCH
from .services.automatch import start_auto_match
from .services.mappings import MappingError, match_manually, unmatch

SKU_SEARCH_HELP = _("A SKU (any case, spaces around ignored), a name, a barcode or an id.")


def _qty(value) -> str:
    return f"{value:g}" if value is not None else "—"


def _job_message(request, job, what: str):
    url = reverse("admin:jobs_backgroundjob_change", args=[job.pk])
    messages.success(request, format_html(gettext('{} started as <a href="{}">job #{}</a>.'), what, url, job.pk))


class SkuSearchMixin:
    """Search by the normalized SKU (indexed, exact) besides the admin's own search fields."""

    sku_key_lookup = "sku_key"

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        key = sku_key(search_term)
        if key:
            found = found | queryset.filter(**{self.sku_key_lookup: key})
        return found, may_have_duplicates


# --- Nhanh -------------------------------------------------------------------------------------------
class NhanhStockInline(admin.TabularInline):
    model = NhanhStock
    extra = 0
    can_delete = False
    readonly_fields = ("depot_id", "available", "remain", "holding", "shipping", "damaged", "transfering")
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(NhanhProduct)
class NhanhProductAdmin(SkuSearchMixin, PullButtonsAdmin):
    pull_spec = ("nhanh", "products")
    list_display = ("nhanh_id", "code", "name", "parent_id", "status", "retail_price", "stock_col",
                    "upstream_updated_at", "stock_updated_at")
    list_filter = ("status", ("upstream_updated_at", admin.DateFieldListFilter))
    search_fields = ("=nhanh_id", "code", "name", "barcode")
    search_help_text = SKU_SEARCH_HELP
    inlines = [NhanhStockInline]
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("stocks")

    @admin.display(description=_("Available per depot"))
    def stock_col(self, p):
        stocks = sorted(p.stocks.all(), key=lambda s: s.depot_id)
        return ", ".join(f"{s.depot_id}: {_qty(s.available)}" for s in stocks) or "—"


@admin.register(NhanhDepot)
class NhanhDepotAdmin(admin.ModelAdmin):
    """The depot → location map: several depots may feed one location (their stock is summed)."""

    list_display = ("depot_id", "name", "location", "first_seen_at")
    list_editable = ("name", "location")
    list_select_related = ("location",)
    search_fields = ("=depot_id", "name")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "location":
            kwargs["queryset"] = ShopifyLocation.objects.filter(is_active=True)
            kwargs["help_text"] = _("Locations come from the Shopify products pull.")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# --- Shopify ------------------------------------------------------------------------------------------
class VariantInline(admin.TabularInline):
    model = ShopifyVariant
    extra = 0
    can_delete = False
    fields = ("shopify_id", "sku", "title", "price", "compare_at_price", "inventory_item_id", "inventory_quantity")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShopifyProduct)
class ShopifyProductAdmin(PullButtonsAdmin):
    pull_spec = ("shopify", "products")
    list_display = ("shopify_id", "title", "handle", "status", "variants_col", "upstream_updated_at")
    list_filter = ("status",)
    search_fields = ("=shopify_id", "title", "handle", "variants__sku")
    inlines = [VariantInline]
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(variant_count=Count("variants"))

    @admin.display(description=_("Variants"), ordering="variant_count")
    def variants_col(self, p):
        return p.variant_count


class LevelInline(admin.TabularInline):
    model = ShopifyInventoryLevel
    extra = 0
    can_delete = False
    fields = ("location_id", "available", "read_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ShopifyVariant)
class ShopifyVariantAdmin(SkuSearchMixin, ReadOnlyAdmin):
    list_display = ("shopify_id", "sku", "title", "product", "price", "compare_at_price", "levels_col",
                    "upstream_updated_at")
    list_select_related = ("product",)
    search_fields = ("=shopify_id", "sku", "title", "barcode", "product__title")
    search_help_text = SKU_SEARCH_HELP
    inlines = [LevelInline]
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product").prefetch_related("levels")

    @admin.display(description=_("Available per location"))
    def levels_col(self, v):
        return ", ".join(f"{lvl.location_id}: {_qty(lvl.available)}"
                         for lvl in sorted(v.levels.all(), key=lambda lvl: lvl.location_id)) or "—"


@admin.register(ShopifyLocation)
class ShopifyLocationAdmin(ReadOnlyAdmin):
    list_display = ("shopify_id", "name", "is_active", "fulfills_online_orders", "depots_col")
    list_filter = ("is_active",)
    search_fields = ("=shopify_id", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("depots")

    @admin.display(description=_("Fed by Nhanh depots"))
    def depots_col(self, loc):
        return ", ".join(str(d) for d in loc.depots.all()) or "—"


# --- mappings -----------------------------------------------------------------------------------------
class MatchForm(forms.Form):
    nhanh_id = forms.IntegerField(label=_("Nhanh product id"), help_text=_("The id in Nhanh (not our row id)."))
    shopify_id = forms.IntegerField(label=_("Shopify variant id"),
                                    help_text=_("The number at the end of the variant's gid."))

    def clean(self):
        data = super().clean()
        self.nhanh = NhanhProduct.objects.filter(nhanh_id=data.get("nhanh_id")).first()
        self.shopify = ShopifyVariant.objects.filter(shopify_id=data.get("shopify_id")).first()
        if self.nhanh is None:
            self.add_error("nhanh_id", _("No pulled Nhanh product has this id; pull it first."))
        if self.shopify is None:
            self.add_error("shopify_id", _("No pulled Shopify variant has this id; pull it first."))
        return data


@admin.register(ProductMapping)
class ProductMappingAdmin(ProductSyncAdminMixin, admin.ModelAdmin):
    """Staff's view of the pairs. The sync side (ProductSyncAdminMixin) adds its actions through
    ``sync_actions`` and its buttons through ``sync_buttons(request)`` (both optional)."""

    change_list_template = "admin/customers/customermapping/change_list.html"  # POST buttons + "Match manually"
    list_display = ("nhanh_col", "shopify_col", "is_active", "matched_by", "matched_sku", "sync_status",
                    "synced_at", "stock_col", "sync_attempts", "error_col")
    list_filter = ("sync_status", "matched_by", "is_active")
    search_fields = ("nhanh_product__code", "nhanh_product__name", "=nhanh_product__nhanh_id",
                     "shopify_variant__sku", "shopify_variant__title", "=shopify_variant__shopify_id", "matched_sku")
    search_help_text = SKU_SEARCH_HELP
    list_select_related = ("nhanh_product", "shopify_variant", "shopify_variant__product")
    raw_id_fields = ("nhanh_product", "shopify_variant", "matched_by_user")
    actions = ("unmatch_selected", *getattr(ProductSyncAdminMixin, "sync_actions", ()))
    show_full_result_count = False
    list_per_page = 50
    ordering = ("-pk",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("nhanh_product", "shopify_variant",
                                                            "shopify_variant__product", "matched_by_user")

    def get_search_results(self, request, queryset, search_term):
        found, duplicates = super().get_search_results(request, queryset, search_term)
        key = sku_key(search_term)
        if key:
            found = found | queryset.filter(nhanh_product__sku_key=key) | queryset.filter(
                shopify_variant__sku_key=key)
        return found, duplicates

    def has_add_permission(self, request):
        return False  # pairs come from auto-match or "Match manually"

    def has_change_permission(self, request, obj=None):
        return False

    def has_unmatch_permission(self, request):
        return request.user.has_perm("products.change_productmapping")

    @admin.display(description=_("Nhanh product"), ordering="nhanh_product__code")
    def nhanh_col(self, m):
        return str(m.nhanh_product)

    @admin.display(description=_("Shopify variant"), ordering="shopify_variant__sku")
    def shopify_col(self, m):
        v = m.shopify_variant
        return f"{v.sku or '(no SKU)'} · {v.product.title} · {v.title} · #{v.shopify_id}"

    @admin.display(description=_("Stock last sent"))
    def stock_col(self, m):
        return ", ".join(f"{loc}: {qty}" for loc, qty in sorted(m.last_sent_stock.items())) or "—"

    @admin.display(description=_("Last error"))
    def error_col(self, m):
        return (m.last_error[:120] + "…") if len(m.last_error) > 120 else m.last_error

    @admin.action(description=_("Unmatch selected (auto-match will leave them alone)"), permissions=["unmatch"])
    def unmatch_selected(self, request, queryset):
        n = unmatch(list(queryset), user=request.user)
        self.message_user(request, gettext("Unmatched %(n)s pair(s).") % {"n": n})

    # --- buttons --------------------------------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("automatch/", view(require_POST(self.automatch_view)), name="products_productmapping_automatch"),
            path("dry-run/", view(require_POST(self.dry_run_view)), name="products_productmapping_dry_run"),
            path("match/", view(self.match_view), name="products_productmapping_match"),
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        buttons = []
        if request.user.has_perm(RUN_AUTOMATCH):
            buttons += [{"url": reverse("admin:products_productmapping_automatch"), "label": _("Auto-match now"),
                         "title": _("Match unmapped products by SKU")},
                        {"url": reverse("admin:products_productmapping_dry_run"), "label": _("Dry run"),
                         "title": _("Report what auto-match would create, without writing")}]
        sync_buttons = getattr(super(), "sync_buttons", None)
        if sync_buttons is not None:
            buttons += sync_buttons(request)
        extra_context = {**(extra_context or {}), "post_buttons": buttons,
                         "can_match": request.user.has_perm("products.add_productmapping")}
        return super().changelist_view(request, extra_context=extra_context)

    def _back(self):
        return redirect(reverse("admin:products_productmapping_changelist"))

    def automatch_view(self, request):
        if not request.user.has_perm(RUN_AUTOMATCH):
            raise PermissionDenied
        _job_message(request, start_auto_match(started_by=StartedBy.USER, user=request.user),
                     gettext("Product auto-match"))
        return self._back()

    def dry_run_view(self, request):
        if not request.user.has_perm(RUN_AUTOMATCH):
            raise PermissionDenied
        job = start_auto_match(dry_run=True, started_by=StartedBy.USER, user=request.user, run_now=True)
        m = job.metadata
        messages.info(request, gettext(
            "Dry run (job #%(job)s): would match %(matched)s, %(ambiguous)s ambiguous SKUs, %(blank)s Nhanh products "
            "without a SKU, %(none)s without a candidate. Nothing was written.") % {
            "job": job.pk, "matched": m.get("matched", 0), "ambiguous": m.get("ambiguous", 0),
            "blank": m.get("blank_nhanh", 0), "none": m.get("no_candidate", 0)})
        return self._back()

    def match_view(self, request):
        if not request.user.has_perm("products.add_productmapping"):
            raise PermissionDenied
        form = MatchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                match_manually(form.nhanh.pk, form.shopify.pk, user=request.user)
            except MappingError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, gettext("Matched %(a)s with %(b)s.") % {"a": form.nhanh, "b": form.shopify})
                return self._back()
        return TemplateResponse(request, "admin/customers/match.html", {
            **self.admin_site.each_context(request), "title": _("Match products manually"), "form": form,
            "opts": self.model._meta})


# --- ambiguous SKUs -----------------------------------------------------------------------------------
def attach_products(rows) -> None:
    """Load every Nhanh product and Shopify variant an ambiguous SKU lists in two queries (their ids are JSON
    lists, which prefetch_related cannot follow)."""
    rows = list(rows)
    nhanh_ids = {i for a in rows for i in a.nhanh_product_ids}
    variant_ids = {i for a in rows for i in a.shopify_variant_ids}
    nhanh = {p.nhanh_id: p for p in NhanhProduct.objects.filter(nhanh_id__in=nhanh_ids)} if nhanh_ids else {}
    variants = {v.shopify_id: v for v in ShopifyVariant.objects.filter(shopify_id__in=variant_ids)} \
        if variant_ids else {}
    for a in rows:
        a.nhanh_rows = [nhanh[i] for i in a.nhanh_product_ids if i in nhanh]
        a.variant_rows = [variants[i] for i in a.shopify_variant_ids if i in variants]


class AmbiguousSkuChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        attach_products(self.result_list)


def _links(objects) -> str:
    return format_html_join(", ", '<a href="{}">{}</a>', (
        (reverse(f"admin:products_{o._meta.model_name}_change", args=[o.pk]), o) for o in objects))


@admin.register(AmbiguousSku)
class AmbiguousSkuAdmin(admin.ModelAdmin):
    """Why auto-match left these alone; staff decide with "Match manually" on the mappings page."""

    list_display = ("sku_key", "nhanh_col", "shopify_col", "detected_at")
    search_fields = ("sku_key",)
    readonly_fields = ("sku_key", "nhanh_col", "shopify_col", "detected_at")
    fields = readonly_fields
    list_per_page = 50

    def get_changelist(self, request, **kwargs):
        return AmbiguousSkuChangeList

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            attach_products([obj])
        return obj

    def get_search_results(self, request, queryset, search_term):
        key = sku_key(search_term)
        if not key:
            return queryset, False
        return queryset.filter(sku_key__contains=key), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("Nhanh products with this SKU"))
    def nhanh_col(self, a):
        return _links(a.nhanh_rows) or "—"

    @admin.display(description=_("Shopify variants with this SKU"))
    def shopify_col(self, a):
        return _links(a.variant_rows) or "—"
