from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from jobs.admin_pull import PullButtonsMixin
from jobs.formatting import vnd

from . import search
from .models import NhanhCustomer, NhanhCustomerPhone, ShopifyCustomer, ShopifyCustomerPhone

PHONE_SEARCH_HELP = _("A phone in any format (0912 345 678, +84912345678, an old 11-digit number, or only its "
                      "first or last digits), a name with or without accents, an email or an id.")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Pulled rows are the upstream's data: staff read them here and change them upstream."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class PullButtonsAdmin(PullButtonsMixin, ReadOnlyAdmin):
    pass


class NhanhPhoneInline(admin.TabularInline):
    model = NhanhCustomerPhone
    extra = 0
    can_delete = False
    readonly_fields = ("e164", "source")


class ShopifyPhoneInline(NhanhPhoneInline):
    model = ShopifyCustomerPhone


@admin.register(NhanhCustomer)
class NhanhCustomerAdmin(PullButtonsAdmin):
    pull_spec = ("nhanh", "customers")
    list_display = ("nhanh_id", "name", "mobile", "email", "customer_type", "total_spent_col",
                    "upstream_updated_at")
    list_filter = ("customer_type", ("upstream_updated_at", admin.DateFieldListFilter))
    search_fields = ("=nhanh_id", "name", "mobile", "email", "phones__e164")  # shows the box; see below
    search_help_text = PHONE_SEARCH_HELP
    inlines = [NhanhPhoneInline]
    show_full_result_count = False  # COUNT(*) on 200k rows on every page view is wasted work
    list_per_page = 50  # rendering is most of a page's time: 100 rows cost ~100 ms on a 2-core machine
    paginator = search.EstimatedCountPaginator

    @admin.display(description=_("total spent"), ordering="total_spent")
    def total_spent_col(self, obj):
        return vnd(obj.total_spent)

    def get_search_results(self, request, queryset, search_term):
        # Indexed phone and folded-text search (customers/search.py), never ILIKE '%…%' over the table.
        if not search_term.strip():
            return queryset, False
        return search.search_nhanh_customers(queryset, search_term), False


class ShopifyStateFilter(admin.SimpleListFilter):
    """Shopify's CustomerState values, listed without a SELECT DISTINCT over every customer."""

    title, parameter_name = _("state"), "state"

    def lookups(self, request, model_admin):
        return [("ENABLED", pgettext_lazy("Shopify customer state", "Enabled")),
                ("DISABLED", pgettext_lazy("Shopify customer state", "Disabled")),
                ("INVITED", pgettext_lazy("Shopify customer state", "Invited")),
                ("DECLINED", pgettext_lazy("Shopify customer state", "Declined"))]

    def queryset(self, request, queryset):
        return queryset.filter(state=self.value()) if self.value() else queryset


@admin.register(ShopifyCustomer)
class ShopifyCustomerAdmin(PullButtonsAdmin):
    pull_spec = ("shopify", "customers")
    list_display = ("shopify_id", "last_name", "first_name", "email", "phone", "address_phone", "state",
                    "amount_spent_col", "upstream_updated_at")
    list_filter = (ShopifyStateFilter, ("upstream_updated_at", admin.DateFieldListFilter))
    search_fields = ("=shopify_id", "first_name", "last_name", "email", "phone", "address_phone", "phones__e164")
    search_help_text = PHONE_SEARCH_HELP
    inlines = [ShopifyPhoneInline]
    show_full_result_count = False
    list_per_page = 50
    paginator = search.EstimatedCountPaginator

    @admin.display(description=_("amount spent"), ordering="amount_spent")
    def amount_spent_col(self, obj):
        return vnd(obj.amount_spent)

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return search.search_shopify_customers(queryset, search_term), False



from . import admin_mapping  # noqa: E402,F401  (registers the mapping admin)
