from django.contrib import admin

from jobs.admin_pull import PullButtonsMixin

from .models import NhanhCustomer, NhanhCustomerPhone, ShopifyCustomer, ShopifyCustomerPhone


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
    list_display = ("nhanh_id", "name", "mobile", "email", "customer_type", "total_spent",
                    "upstream_updated_at")
    list_filter = ("customer_type", ("upstream_updated_at", admin.DateFieldListFilter))
    search_fields = ("=nhanh_id", "name", "mobile", "email", "phones__e164")
    inlines = [NhanhPhoneInline]
    show_full_result_count = False  # COUNT(*) on 200k rows on every page view is wasted work


@admin.register(ShopifyCustomer)
class ShopifyCustomerAdmin(PullButtonsAdmin):
    pull_spec = ("shopify", "customers")
    list_display = ("shopify_id", "last_name", "first_name", "email", "phone", "address_phone", "state",
                    "amount_spent", "upstream_updated_at")
    list_filter = ("state", ("upstream_updated_at", admin.DateFieldListFilter))
    search_fields = ("=shopify_id", "first_name", "last_name", "email", "phone", "address_phone", "phones__e164")
    inlines = [ShopifyPhoneInline]
    show_full_result_count = False



from . import admin_mapping  # noqa: E402,F401  (registers the mapping admin)
