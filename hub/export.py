"""Export of the lists staff filter (jobs, customers of each system, customer mappings with their sync status and
errors, ambiguous matches, products and product mappings), through django-import-export — export only, no import.

- **What**: one ``ModelResource`` per list below (the columns and their headers). The admin's *Export* button
  (import-export's ``ExportMixin``) is added to each list's existing admin by ``attach_exports`` (called at the
  end of ``hub/admin.py``), so the apps' admins carry no export code; a product model no app has put in the admin
  yet gets a plain read-only list with the button.
- **Which rows**: those of the list as filtered and searched on screen (import-export builds the changelist's
  queryset from the same query string: filters, search, ordering), in the same order.
- **Who**: the model's view permission **and** ``<app>.export_<model>`` (import-export's export permission,
  ``IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"``; created for these models after every ``migrate`` by
  ``create_export_permissions``; the operator and manager roles hold them, see ``hub/roles.py``): a bulk copy of
  customers' phones and emails is a step beyond looking at them.
- **Size**: CSV is **streamed** (``StreamingHttpResponse`` over ``QuerySet.iterator(chunk_size=…)``: 200,000
  rows never sit in memory together, and the first bytes leave at once, so no request waits for the whole file).
  XLSX (openpyxl builds the workbook in memory) is offered up to ``XLSX_MAX_ROWS`` rows; a larger list is refused
  with a message pointing to CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.apps import apps
from django.contrib import admin
from django.http import StreamingHttpResponse
from django.template.loader import select_template
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export import fields, resources
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.signals import post_export

XLSX_MAX_ROWS = 20_000
CHUNK_SIZE = 2_000


def col(attribute: str, header, **kw) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=header, readonly=True, **kw)


# --- resources (the columns) --------------------------------------------------------------------------------------
class JobResource(resources.ModelResource):
    id = col("id", gettext_lazy("Job"))
    type = col("type_label", gettext_lazy("Type"))
    status = col("get_status_display", gettext_lazy("Status"))
    total = col("total", gettext_lazy("Total"))
    processed = col("processed", gettext_lazy("Processed"))
    successful = col("successful", gettext_lazy("Successful"))
    failed = col("failed", gettext_lazy("Failed"))
    created_at = col("created_at", gettext_lazy("Created"))
    started_at = col("started_at", gettext_lazy("Started"))
    completed_at = col("completed_at", gettext_lazy("Completed"))
    started_by = col("started_by_label", gettext_lazy("Started by"))
    error = fields.Field(column_name=gettext_lazy("Error"), readonly=True)

    class Meta:
        model = "jobs.BackgroundJob"
        fields = ("id", "type", "status", "total", "processed", "successful", "failed", "created_at", "started_at",
                  "completed_at", "started_by", "error")

    def dehydrate_error(self, job):
        return job.error.split("\n", 1)[0] if job.error else ""  # the message; tracebacks stay in the log

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("started_by_user")


class NhanhCustomerResource(resources.ModelResource):
    nhanh_id = col("nhanh_id", gettext_lazy("Nhanh id"))
    name = col("name", gettext_lazy("Name"))
    mobile = col("mobile", gettext_lazy("Mobile"))
    email = col("email", gettext_lazy("Email"))
    customer_type = col("get_customer_type_display", gettext_lazy("Type"))
    total_spent = col("total_spent", gettext_lazy("Total spent (VND)"))
    points = col("points", gettext_lazy("Points"))
    address = col("address", gettext_lazy("Address"))
    upstream_updated_at = col("upstream_updated_at", gettext_lazy("Updated in Nhanh"))

    class Meta:
        model = "customers.NhanhCustomer"
        fields = ("nhanh_id", "name", "mobile", "email", "customer_type", "total_spent", "points", "address",
                  "upstream_updated_at")


class ShopifyCustomerResource(resources.ModelResource):
    shopify_id = col("shopify_id", gettext_lazy("Shopify id"))
    first_name = col("first_name", gettext_lazy("First name"))
    last_name = col("last_name", gettext_lazy("Last name"))
    email = col("email", gettext_lazy("Email"))
    phone = col("phone", gettext_lazy("Phone"))
    address_phone = col("address_phone", gettext_lazy("Address phone"))
    state = col("state", gettext_lazy("State"))
    orders_count = col("orders_count", gettext_lazy("Orders"))
    amount_spent = col("amount_spent", gettext_lazy("Amount spent"))
    tags = fields.Field(column_name=gettext_lazy("Tags"), readonly=True)
    upstream_updated_at = col("upstream_updated_at", gettext_lazy("Updated in Shopify"))

    class Meta:
        model = "customers.ShopifyCustomer"
        fields = ("shopify_id", "first_name", "last_name", "email", "phone", "address_phone", "state",
                  "orders_count", "amount_spent", "tags", "upstream_updated_at")

    def dehydrate_tags(self, customer):
        return ", ".join(customer.tags or [])


class PancakeCustomerResource(resources.ModelResource):
    page = col("page_id", gettext_lazy("Page id"))
    psid = col("psid", gettext_lazy("PSID"))
    name = col("name", gettext_lazy("Name"))
    phones = fields.Field(column_name=gettext_lazy("Phones"), readonly=True)
    upstream_updated_at = col("upstream_updated_at", gettext_lazy("Updated in Pancake"))

    class Meta:
        model = "pancake.PancakeCustomer"
        fields = ("page", "psid", "name", "phones", "upstream_updated_at")

    def dehydrate_phones(self, customer):
        return ", ".join(str(p) for p in customer.phone_numbers or [])


class CustomerMappingResource(resources.ModelResource):
    id = col("id", gettext_lazy("Mapping"))
    nhanh_id = col("nhanh_customer__nhanh_id", gettext_lazy("Nhanh id"))
    nhanh_name = col("nhanh_customer__name", gettext_lazy("Nhanh name"))
    total_spent = col("nhanh_customer__total_spent", gettext_lazy("Total spent (VND)"))
    shopify_id = col("shopify_customer__shopify_id", gettext_lazy("Shopify id"))
    shopify_email = col("shopify_customer__email", gettext_lazy("Shopify email"))
    is_active = col("is_active", gettext_lazy("Active"))
    matched_by = col("get_matched_by_display", gettext_lazy("Matched by"))
    matched_phone = col("matched_phone", gettext_lazy("Matched phone"))
    matched_at = col("matched_at", gettext_lazy("Matched at"))
    sync_status = col("get_sync_status_display", gettext_lazy("Sync status"))
    synced_at = col("synced_at", gettext_lazy("Synced at"))
    last_sent_total = col("last_sent_total", gettext_lazy("Total last sent"))
    last_sent_tier = col("last_sent_tier", gettext_lazy("Tier last sent"))
    sync_attempts = col("sync_attempts", gettext_lazy("Sync attempts"))
    last_error = col("last_error", gettext_lazy("Last error"))

    class Meta:
        model = "customers.CustomerMapping"
        fields = ("id", "nhanh_id", "nhanh_name", "total_spent", "shopify_id", "shopify_email", "is_active",
                  "matched_by", "matched_phone", "matched_at", "sync_status", "synced_at", "last_sent_total",
                  "last_sent_tier", "sync_attempts", "last_error")

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("nhanh_customer", "shopify_customer")


class AmbiguousMatchResource(resources.ModelResource):
    nhanh_id = col("nhanh_customer__nhanh_id", gettext_lazy("Nhanh id"))
    nhanh_name = col("nhanh_customer__name", gettext_lazy("Nhanh name"))
    phones = fields.Field(column_name=gettext_lazy("Phones"), readonly=True)
    candidates = fields.Field(column_name=gettext_lazy("Shopify candidates"), readonly=True)
    rivals = fields.Field(column_name=gettext_lazy("Other Nhanh customers"), readonly=True)
    detected_at = col("detected_at", gettext_lazy("Detected at"))

    class Meta:
        model = "customers.AmbiguousMatch"
        fields = ("nhanh_id", "nhanh_name", "phones", "candidates", "rivals", "detected_at")

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("nhanh_customer")

    def dehydrate_phones(self, m):
        return ", ".join(map(str, m.phones or []))

    def dehydrate_candidates(self, m):
        return ", ".join(map(str, m.shopify_candidates or []))

    def dehydrate_rivals(self, m):
        return ", ".join(map(str, m.nhanh_rivals or []))


class NhanhProductResource(resources.ModelResource):
    nhanh_id = col("nhanh_id", gettext_lazy("Nhanh id"))
    parent_id = col("parent_id", gettext_lazy("Parent id"))
    code = col("code", gettext_lazy("Code (SKU)"))
    barcode = col("barcode", gettext_lazy("Barcode"))
    name = col("name", gettext_lazy("Name"))
    status = col("get_status_display", gettext_lazy("Status"))
    retail_price = col("retail_price", gettext_lazy("Retail price"))
    wholesale_price = col("wholesale_price", gettext_lazy("Wholesale price"))
    upstream_updated_at = col("upstream_updated_at", gettext_lazy("Updated in Nhanh"))

    class Meta:
        model = "products.NhanhProduct"
        fields = ("nhanh_id", "parent_id", "code", "barcode", "name", "status", "retail_price", "wholesale_price",
                  "upstream_updated_at")


class ShopifyProductResource(resources.ModelResource):
    shopify_id = col("shopify_id", gettext_lazy("Shopify id"))
    title = col("title", gettext_lazy("Title"))
    handle = col("handle", gettext_lazy("Handle"))
    status = col("status", gettext_lazy("Status"))
    upstream_updated_at = col("upstream_updated_at", gettext_lazy("Updated in Shopify"))

    class Meta:
        model = "products.ShopifyProduct"
        fields = ("shopify_id", "title", "handle", "status", "upstream_updated_at")


class ShopifyVariantResource(resources.ModelResource):
    shopify_id = col("shopify_id", gettext_lazy("Shopify id"))
    product = col("product_id", gettext_lazy("Product id"))
    title = col("title", gettext_lazy("Title"))
    sku = col("sku", gettext_lazy("SKU"))
    barcode = col("barcode", gettext_lazy("Barcode"))
    price = col("price", gettext_lazy("Price"))
    compare_at_price = col("compare_at_price", gettext_lazy("Compare-at price"))
    inventory_quantity = col("inventory_quantity", gettext_lazy("Inventory quantity"))

    class Meta:
        model = "products.ShopifyVariant"
        fields = ("shopify_id", "product", "title", "sku", "barcode", "price", "compare_at_price",
                  "inventory_quantity")


class ProductMappingResource(resources.ModelResource):
    id = col("id", gettext_lazy("Mapping"))
    nhanh_id = col("nhanh_product__nhanh_id", gettext_lazy("Nhanh id"))
    nhanh_code = col("nhanh_product__code", gettext_lazy("Nhanh code (SKU)"))
    nhanh_name = col("nhanh_product__name", gettext_lazy("Nhanh name"))
    variant_id = col("shopify_variant__shopify_id", gettext_lazy("Shopify variant id"))
    variant_sku = col("shopify_variant__sku", gettext_lazy("Shopify SKU"))
    is_active = col("is_active", gettext_lazy("Active"))
    matched_by = col("get_matched_by_display", gettext_lazy("Matched by"))
    matched_at = col("matched_at", gettext_lazy("Matched at"))
    sync_status = col("get_sync_status_display", gettext_lazy("Sync status"))
    synced_at = col("synced_at", gettext_lazy("Synced at"))
    last_sent_price = col("last_sent_price", gettext_lazy("Price last sent"))
    sync_attempts = col("sync_attempts", gettext_lazy("Sync attempts"))
    last_error = col("last_error", gettext_lazy("Last error"))

    class Meta:
        model = "products.ProductMapping"
        fields = ("id", "nhanh_id", "nhanh_code", "nhanh_name", "variant_id", "variant_sku", "is_active",
                  "matched_by", "matched_at", "sync_status", "synced_at", "last_sent_price", "sync_attempts",
                  "last_error")

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("nhanh_product", "shopify_variant")


class AmbiguousSkuResource(resources.ModelResource):
    sku_key = col("sku_key", gettext_lazy("SKU"))
    nhanh = fields.Field(column_name=gettext_lazy("Nhanh products"), readonly=True)
    shopify = fields.Field(column_name=gettext_lazy("Shopify variants"), readonly=True)
    detected_at = col("detected_at", gettext_lazy("Detected at"))

    class Meta:
        model = "products.AmbiguousSku"
        fields = ("sku_key", "nhanh", "shopify", "detected_at")

    def dehydrate_nhanh(self, a):
        return ", ".join(map(str, a.nhanh_product_ids or []))

    def dehydrate_shopify(self, a):
        return ", ".join(map(str, a.shopify_variant_ids or []))


EXPORTS: dict[str, type[resources.ModelResource]] = {
    "jobs.BackgroundJob": JobResource,
    "customers.NhanhCustomer": NhanhCustomerResource,
    "customers.ShopifyCustomer": ShopifyCustomerResource,
    "pancake.PancakeCustomer": PancakeCustomerResource,
    "customers.CustomerMapping": CustomerMappingResource,
    "customers.AmbiguousMatch": AmbiguousMatchResource,
    "products.NhanhProduct": NhanhProductResource,
    "products.ShopifyProduct": ShopifyProductResource,
    "products.ShopifyVariant": ShopifyVariantResource,
    "products.ProductMapping": ProductMappingResource,
    "products.AmbiguousSku": AmbiguousSkuResource,
}


def _resolve_models() -> None:
    # ModelResource.Meta.model may name a model as "app.Model" (import-export resolves it on first use); make it
    # the class now so a missing app fails at start-up rather than on the first export.
    for label, resource in EXPORTS.items():
        resource._meta.model = apps.get_model(label)


# --- the admin side -----------------------------------------------------------------------------------------------
class _Echo:
    """A file-like object whose write returns the line: csv.writer → generator."""

    def write(self, value):
        return value


def csv_rows(resource, queryset, export_fields=None) -> Iterator[str]:
    """The CSV of ``queryset`` line by line (UTF-8 BOM first, so spreadsheet programs read Vietnamese right)."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    yield writer.writerow(resource.get_export_headers(selected_fields=export_fields))
    columns = resource.get_export_fields(export_fields)  # once, not per row (import-export's export_resource)
    queryset = resource.filter_export(queryset)
    if "raw" in {f.name for f in queryset.model._meta.concrete_fields}:
        queryset = queryset.defer("raw")  # the upstream's whole payload: large, and never a column here
    for obj in queryset.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow([resource.export_field(field, obj) for field in columns])


class StreamingExportMixin(ExportMixin):
    """import-export's Export button and page, with the CSV streamed and the permissions above."""

    formats = [CSV, XLSX]
    skip_export_form = False
    # import-export's own template shows the list's other buttons only to who may add: ours keeps them all.
    import_export_change_list_template = "admin/hub/change_list_export.html"

    def init_change_list_template(self):
        super().init_change_list_template()
        if self.ie_base_change_list_template == "admin/change_list.html":
            # No template set on the admin: the one Django would pick for this model (admin/<app>/<model>/…).
            opts = self.model._meta
            self.ie_base_change_list_template = select_template([
                f"admin/{opts.app_label}/{opts.model_name}/change_list.html",
                f"admin/{opts.app_label}/change_list.html", "admin/change_list.html"]).template.name

    def has_export_permission(self, request):
        return self.has_view_permission(request) and super().has_export_permission(request)

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        if not self.has_export_permission(request):  # the library checks again when building the data
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        filename = self.get_export_filename(request, queryset, file_format)
        if isinstance(file_format, CSV):
            resource_class = self.choose_export_resource_class(export_form, request)
            resource = resource_class(**self.get_export_resource_kwargs(request, export_form=export_form))
            export_fields = self.get_export_resource_fields_from_form(export_form)
            response = StreamingHttpResponse(csv_rows(resource, queryset, export_fields),
                                             content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            post_export.send(sender=None, model=self.model)
            return response
        if queryset.order_by()[:XLSX_MAX_ROWS + 1].count() > XLSX_MAX_ROWS:
            # export_action turns a ValueError into a message on the export page.
            raise ValueError(_("This list has more than %(n)s rows: export it as CSV (streamed), or filter it "
                               "first.") % {"n": f"{XLSX_MAX_ROWS:,}"})
        return super()._do_file_export(file_format, request, queryset, export_form=export_form)


class ReadOnlyExportAdmin(admin.ModelAdmin):
    """For a model to export that no app has put in the admin yet: read it, filter nothing, change nothing."""

    show_full_result_count = False
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def attach_exports(site: admin.AdminSite) -> list[str]:
    """Give each model of ``EXPORTS`` its Export button on ``site`` (its own admin kept, the mixin put in front).
    Returns the labels handled."""
    _resolve_models()
    done = []
    for label, resource in EXPORTS.items():
        model = apps.get_model(label)
        old = site._registry.get(model)
        current = type(old) if old is not None else ReadOnlyExportAdmin
        if issubclass(current, StreamingExportMixin):
            continue
        if old is not None:
            site.unregister(model)
        cls = type(current.__name__, (StreamingExportMixin, current),
                   {"resource_classes": [resource], "__module__": current.__module__})
        site.register(model, cls)
        if old is not None:  # what other apps set on the registered instance (pancake adds an inline) stays
            new = site._registry[model]
            for name, value in vars(old).items():
                if name not in ("change_list_template", "ie_base_change_list_template"):
                    setattr(new, name, value)
        done.append(label)
    return done


def create_export_permissions(sender=None, using=None, **kwargs) -> None:
    """post_migrate: ``<app>.export_<model>`` for each exported model (import-export's export permission)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    if using not in (None, "default"):
        return
    for label in EXPORTS:
        model = apps.get_model(label)
        ct = ContentType.objects.get_for_model(model)
        Permission.objects.get_or_create(
            content_type=ct, codename=f"export_{model._meta.model_name}",
            defaults={"name": f"Can export {model._meta.verbose_name_plural}"[:255]})
