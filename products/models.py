"""The catalog on both sides (Nhanh products with stock per depot; Shopify products, variants, locations and stock
per location), the depot → location map, and the Nhanh product ↔ Shopify variant mappings that stock and prices are
synced through."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import SyncStatus
from jobs.ingest import UpstreamRecord

QUANTITY = {"max_digits": 14, "decimal_places": 3, "default": 0}  # Nhanh reports quantities as doubles
MONEY = {"max_digits": 16, "decimal_places": 2, "null": True, "blank": True}


def sku_key(sku: str | None) -> str:
    """The SKU as auto-match compares it: trimmed and case-folded (blank → ""). The SQL match joins on the column
    filled from this, so both sides normalize one way."""
    return (sku or "").strip().casefold()


class NhanhProductStatus(models.IntegerChoices):
    NEW = 1, _("New")
    ACTIVE = 2, _("Active")
    INACTIVE = 3, _("Inactive")
    OUT_OF_STOCK = 4, _("Out of stock")


class NhanhProduct(UpstreamRecord):
    nhanh_id = models.BigIntegerField(_("Nhanh id"), unique=True)
    parent_id = models.BigIntegerField(_("parent id"), null=True, blank=True, db_index=True,
                                       help_text=_("Nhanh parentId: the parent product of a variant."))
    code = models.CharField(_("code (SKU)"), max_length=255, blank=True, help_text=_("As typed in Nhanh."))
    sku_key = models.CharField(_("normalized SKU"), max_length=255, blank=True, editable=False,
                               help_text=_("The code trimmed and case-folded: what auto-match compares."))
    barcode = models.CharField(_("barcode"), max_length=255, blank=True)
    name = models.CharField(_("name"), max_length=500, blank=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=NhanhProductStatus.choices, null=True,
                                              blank=True)
    retail_price = models.DecimalField(_("retail price"), **MONEY)
    old_price = models.DecimalField(_("old price"), **MONEY)
    wholesale_price = models.DecimalField(_("wholesale price"), **MONEY)
    upstream_updated_at = models.DateTimeField(_("updated in Nhanh"), null=True, blank=True, db_index=True,
                                               help_text=_("Product info only: stock changes do not move it."))
    stock_updated_at = models.DateTimeField(_("stock updated"), null=True, blank=True,
                                            help_text=_("When the depot stock below was last read or pushed."))

    class Meta:
        ordering = ["-upstream_updated_at", "-id"]
        # Auto-match groups every product by sku_key: with the id in the index it never reads the table
        # (an index-only scan; bench/automatch_products).
        indexes = [models.Index(fields=["sku_key"], include=["id"], name="nhanh_product_sku_key")]
        verbose_name = _("Nhanh product")
        verbose_name_plural = _("Nhanh products")

    def __str__(self):
        return f"{self.code or '(no SKU)'} · {self.name or '(no name)'} · Nhanh #{self.nhanh_id}"


class ShopifyLocation(UpstreamRecord):
    shopify_id = models.BigIntegerField(_("Shopify id"), unique=True)
    name = models.CharField(_("name"), max_length=255, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    fulfills_online_orders = models.BooleanField(_("fulfills online orders"), default=True)

    class Meta:
        ordering = ["name", "shopify_id"]
        verbose_name = _("Shopify location")
        verbose_name_plural = _("Shopify locations")

    def __str__(self):
        return f"{self.name or _('Location')} (#{self.shopify_id})"

    @property
    def gid(self) -> str:
        return f"gid://shopify/Location/{self.shopify_id}"


class NhanhDepot(models.Model):
    """A Nhanh depot (kho), first seen in a product's stock; staff name it and pick the Shopify location it feeds.
    Several depots may feed one location: the location's stock is their sum. A depot without a location is not
    synced."""

    depot_id = models.BigIntegerField(_("Nhanh depot id"), unique=True)
    name = models.CharField(_("name"), max_length=255, blank=True)
    location = models.ForeignKey(ShopifyLocation, verbose_name=_("Shopify location"), null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="depots",
                                 help_text=_("Where this depot's available stock is sent (summed with the other "
                                             "depots feeding the same location)."))
    first_seen_at = models.DateTimeField(_("first seen"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["depot_id"]
        verbose_name = _("Nhanh depot")
        verbose_name_plural = _("Nhanh depots")

    def __str__(self):
        return f"{self.name or _('Depot')} (#{self.depot_id})"


class NhanhStock(models.Model):
    """One product's stock in one depot, as Nhanh reports it (product/list, product/inventory, inventoryChange)."""

    product = models.ForeignKey(NhanhProduct, verbose_name=_("Nhanh product"), on_delete=models.CASCADE,
                                related_name="stocks")
    depot_id = models.BigIntegerField(_("depot id"), db_index=True)
    remain = models.DecimalField(_("remain"), **QUANTITY)
    available = models.DecimalField(_("available"), **QUANTITY)
    holding = models.DecimalField(_("holding"), **QUANTITY)
    shipping = models.DecimalField(_("shipping"), **QUANTITY)
    damaged = models.DecimalField(_("damaged"), **QUANTITY)
    transfering = models.DecimalField(_("transferring"), **QUANTITY)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["product", "depot_id"], name="uniq_nhanh_stock_depot")]
        verbose_name = _("Nhanh stock")
        verbose_name_plural = _("Nhanh stock")

    def __str__(self):
        return f"{self.product_id} @ depot {self.depot_id}: {self.available}"


class ShopifyProduct(UpstreamRecord):
    shopify_id = models.BigIntegerField(_("Shopify id"), unique=True)
    title = models.CharField(_("title"), max_length=500, blank=True)
    handle = models.CharField(_("handle"), max_length=255, blank=True)
    status = models.CharField(_("status"), max_length=20, blank=True)
    upstream_updated_at = models.DateTimeField(_("updated in Shopify"), null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-upstream_updated_at", "-id"]
        verbose_name = _("Shopify product")
        verbose_name_plural = _("Shopify products")

    def __str__(self):
        return f"{self.title or '(no title)'} · Shopify #{self.shopify_id}"

    @property
    def gid(self) -> str:
        return f"gid://shopify/Product/{self.shopify_id}"


class ShopifyVariant(UpstreamRecord):
    shopify_id = models.BigIntegerField(_("Shopify id"), unique=True)
    product = models.ForeignKey(ShopifyProduct, verbose_name=_("product"), to_field="shopify_id",
                                db_column="product_shopify_id", on_delete=models.CASCADE, related_name="variants")
    title = models.CharField(_("title"), max_length=500, blank=True)
    sku = models.CharField(_("SKU"), max_length=255, blank=True, help_text=_("As typed in Shopify."))
    sku_key = models.CharField(_("normalized SKU"), max_length=255, blank=True, editable=False,
                               help_text=_("The SKU trimmed and case-folded: what auto-match compares."))
    barcode = models.CharField(_("barcode"), max_length=255, blank=True)
    price = models.DecimalField(_("price"), **MONEY)
    compare_at_price = models.DecimalField(_("compare-at price"), **MONEY)
    inventory_item_id = models.BigIntegerField(_("inventory item id"), null=True, blank=True, unique=True)
    inventory_quantity = models.IntegerField(_("inventory quantity"), null=True, blank=True,
                                             help_text=_("Sum over all locations, as Shopify reports it."))
    upstream_updated_at = models.DateTimeField(_("updated in Shopify"), null=True, blank=True)

    class Meta:
        ordering = ["product_id", "shopify_id"]
        indexes = [models.Index(fields=["sku_key"], include=["id"], name="shopify_variant_sku_key")]
        verbose_name = _("Shopify variant")
        verbose_name_plural = _("Shopify variants")

    def __str__(self):
        return f"{self.sku or '(no SKU)'} · {self.title or '(no title)'} · Shopify #{self.shopify_id}"

    @property
    def gid(self) -> str:
        return f"gid://shopify/ProductVariant/{self.shopify_id}"

    @property
    def inventory_item_gid(self) -> str | None:
        return f"gid://shopify/InventoryItem/{self.inventory_item_id}" if self.inventory_item_id else None


class ShopifyInventoryLevel(models.Model):
    """A variant's ``available`` quantity at one location, as last read from Shopify (or set by our sync): the
    value a sync compares with and passes as ``changeFromQuantity``."""

    variant = models.ForeignKey(ShopifyVariant, verbose_name=_("Shopify variant"), on_delete=models.CASCADE,
                                related_name="levels")
    location_id = models.BigIntegerField(_("location id"), db_index=True, help_text=_("Shopify location id."))
    available = models.IntegerField(_("available"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "location_id"], name="uniq_shopify_level")]
        verbose_name = _("Shopify inventory level")
        verbose_name_plural = _("Shopify inventory levels")

    def __str__(self):
        return f"{self.variant_id} @ location {self.location_id}: {self.available}"


class ProductMatchedBy(models.TextChoices):
    SKU = "sku", _("SKU (auto-match)")
    MANUAL = "manual", _("Manual")


class ProductMapping(models.Model):
    """A Nhanh product ↔ Shopify variant pair, and what was last sent to Shopify for it.

    ``is_active=False`` records that staff unmatched the pair: auto-match never touches a Nhanh product that has
    any mapping row. One active mapping per Shopify variant (a constraint, so no run can claim a variant twice)."""

    nhanh_product = models.OneToOneField(NhanhProduct, verbose_name=_("Nhanh product"), on_delete=models.CASCADE,
                                         related_name="mapping")
    shopify_variant = models.ForeignKey(ShopifyVariant, verbose_name=_("Shopify variant"),
                                        on_delete=models.CASCADE, related_name="mappings")
    is_active = models.BooleanField(_("active"), default=True)
    matched_by = models.CharField(_("matched by"), max_length=10, choices=ProductMatchedBy.choices)
    matched_sku = models.CharField(_("matched SKU"), max_length=255, blank=True)
    matched_at = models.DateTimeField(_("matched at"), default=timezone.now)
    matched_by_user = models.ForeignKey("auth.User", verbose_name=_("matched by user"), null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+", db_index=False)
    sync_status = models.CharField(_("sync status"), max_length=10, choices=SyncStatus.choices,
                                   default=SyncStatus.PENDING)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)
    last_sent_stock = models.JSONField(_("stock last sent"), default=dict, blank=True,
                                       help_text=_("Shopify location id → available quantity last set."))
    last_sent_price = models.DecimalField(_("price last sent"), **MONEY)
    last_sent_compare_at_price = models.DecimalField(_("compare-at price last sent"), **MONEY)
    sync_attempts = models.PositiveIntegerField(_("sync attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True, help_text=_("Shopify's userErrors, verbatim."))

    class Meta:
        ordering = ["-matched_at", "-id"]
        verbose_name = _("product mapping")
        verbose_name_plural = _("product mappings")
        constraints = [
            models.UniqueConstraint(fields=["shopify_variant"], condition=models.Q(is_active=True),
                                    name="one_active_mapping_per_shopify_variant"),
        ]
        permissions = [
            ("run_product_automatch", _("Can run product auto-match")),
            ("sync_products", _("Can sync stock and prices to Shopify")),
        ]

    def __str__(self):
        arrow = "↔" if self.is_active else "✕"
        return f"Nhanh #{self.nhanh_product_id} {arrow} Shopify variant #{self.shopify_variant_id}"


class AmbiguousSku(models.Model):
    """A normalized SKU that several unmapped Nhanh products or several unmapped Shopify variants share: listed for
    staff to decide, never guessed. Replaced by each auto-match run."""

    sku_key = models.CharField(_("SKU"), max_length=255, unique=True)
    nhanh_product_ids = models.JSONField(_("Nhanh products"), default=list, help_text=_("Nhanh ids."))
    shopify_variant_ids = models.JSONField(_("Shopify variants"), default=list, help_text=_("Shopify variant ids."))
    detected_at = models.DateTimeField(_("detected at"), default=timezone.now)

    class Meta:
        ordering = ["sku_key"]
        verbose_name = _("ambiguous SKU")
        verbose_name_plural = _("ambiguous SKUs")

    def __str__(self):
        return f"{self.sku_key}: {len(self.nhanh_product_ids)} Nhanh × {len(self.shopify_variant_ids)} Shopify"


# The sync side's tables (stock pushes, pending syncs, webhook deliveries) live in their own module.
from .models_sync import NhanhWebhookDelivery, PendingStockSync, StockPush, WebhookOutcome  # noqa: E402, F401
