from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from jobs.formatting import vnd
from jobs.ingest import UpstreamRecord


class CustomerType(models.IntegerChoices):
    RETAIL = 1, _("Retail")
    WHOLESALE = 2, _("Wholesale")
    AGENT = 3, _("Agent")


class PhoneSource(models.TextChoices):
    NHANH_MOBILE = "nhanh_mobile", _("Nhanh mobile")
    SHOPIFY_PHONE = "shopify_phone", _("Shopify phone")
    SHOPIFY_ADDRESS = "shopify_address", _("Shopify default address")
    SHOPIFY_NOTE = "shopify_note", _("Shopify note")


class NhanhCustomer(UpstreamRecord):
    nhanh_id = models.BigIntegerField(verbose_name=_("nhanh id"), unique=True)
    name = models.CharField(verbose_name=_("name"), max_length=255, blank=True)
    mobile = models.CharField(verbose_name=_("mobile"), max_length=64, blank=True, help_text=_("As typed in Nhanh."))
    email = models.CharField(verbose_name=_("email"), max_length=254, blank=True)
    customer_type = models.PositiveSmallIntegerField(verbose_name=_("customer type"), choices=CustomerType.choices,
                                                     null=True, blank=True)
    address = models.TextField(verbose_name=_("address"), blank=True)
    total_spent = models.BigIntegerField(verbose_name=_("total spent"), default=0,
                                         help_text=_("Lifetime spend in VND (Nhanh totalAmount)."))
    points = models.IntegerField(verbose_name=_("points"), null=True, blank=True)
    upstream_updated_at = models.DateTimeField(verbose_name=_("upstream updated at"), null=True, blank=True,
                                               db_index=True)

    class Meta:
        verbose_name = _("nhanh customer")
        verbose_name_plural = _("nhanh customers")
        ordering = ["-upstream_updated_at", "-id"]

    def __str__(self):
        return f"{self.name or gettext('(no name)')} · Nhanh #{self.nhanh_id}"


class ShopifyCustomer(UpstreamRecord):
    shopify_id = models.BigIntegerField(verbose_name=_("shopify id"), unique=True, help_text=_("legacyResourceId"))
    first_name = models.CharField(verbose_name=_("first name"), max_length=255, blank=True)
    last_name = models.CharField(verbose_name=_("last name"), max_length=255, blank=True)
    email = models.CharField(verbose_name=_("email"), max_length=254, blank=True)
    phone = models.CharField(verbose_name=_("phone"), max_length=64, blank=True,
                             help_text=_("Default phone number (E.164 in Shopify)."))
    address_phone = models.CharField(verbose_name=_("address phone"), max_length=64, blank=True,
                                     help_text=_("Default address phone, as typed."))
    note = models.TextField(verbose_name=_("note"), blank=True)
    state = models.CharField(verbose_name=_("state"), max_length=20, blank=True)
    tags = models.JSONField(verbose_name=_("tags"), default=list, blank=True)
    orders_count = models.IntegerField(verbose_name=_("orders count"), default=0)
    amount_spent = models.DecimalField(verbose_name=_("amount spent"), max_digits=16, decimal_places=2, default=0)
    upstream_created_at = models.DateTimeField(verbose_name=_("upstream created at"), null=True, blank=True)
    upstream_updated_at = models.DateTimeField(verbose_name=_("upstream updated at"), null=True, blank=True,
                                               db_index=True)

    class Meta:
        verbose_name = _("shopify customer")
        verbose_name_plural = _("shopify customers")
        ordering = ["-upstream_updated_at", "-id"]

    def __str__(self):
        name = f"{self.last_name} {self.first_name}".strip()
        return f"{name or self.email or gettext('(no name)')} · Shopify #{self.shopify_id}"

    @property
    def gid(self) -> str:
        return f"gid://shopify/Customer/{self.shopify_id}"


class CustomerPhone(models.Model):
    """One valid phone of a customer in E.164 (indexed): what auto-match joins on."""

    e164 = models.CharField(verbose_name=_("e164"), max_length=20, db_index=True)
    source = models.CharField(verbose_name=_("source"), max_length=20, choices=PhoneSource.choices)

    class Meta:
        abstract = True

    def __str__(self):
        return self.e164


class NhanhCustomerPhone(CustomerPhone):
    customer = models.ForeignKey(NhanhCustomer, verbose_name=_("customer"), on_delete=models.CASCADE,
                                 related_name="phones")

    class Meta:
        verbose_name = _("nhanh customer phone")
        verbose_name_plural = _("nhanh customer phones")
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_nhanh_customer_phone")]


class ShopifyCustomerPhone(CustomerPhone):
    """Phone, default address phone and numbers written in the note."""

    customer = models.ForeignKey(ShopifyCustomer, verbose_name=_("customer"), on_delete=models.CASCADE,
                                 related_name="phones")

    class Meta:
        verbose_name = _("shopify customer phone")
        verbose_name_plural = _("shopify customer phones")
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_shopify_customer_phone")]


class MatchedBy(models.TextChoices):
    PHONE = "phone", _("Phone (auto-match)")
    MANUAL = "manual", _("Manual")
    CREATED = "created", _("Created in Shopify")


class SyncStatus(models.TextChoices):
    PENDING = "pending", _("Not synced yet")
    SYNCED = "synced", _("Synced")
    FAILED = "failed", _("Failed")


class CustomerMapping(models.Model):
    """A Nhanh customer ↔ Shopify customer pair, and how its loyalty data was last sent to Shopify.

    ``is_active=False`` records that staff unmatched the pair: auto-match never touches a Nhanh customer
    that has any mapping row, so manual decisions are never overwritten."""

    nhanh_customer = models.OneToOneField(NhanhCustomer, verbose_name=_("nhanh customer"), on_delete=models.CASCADE,
                                          related_name="mapping")
    shopify_customer = models.ForeignKey(ShopifyCustomer, verbose_name=_("shopify customer"), on_delete=models.CASCADE,
                                         related_name="mappings")
    is_active = models.BooleanField(verbose_name=_("is active"), default=True)
    matched_by = models.CharField(verbose_name=_("matched by"), max_length=10, choices=MatchedBy.choices)
    matched_phone = models.CharField(verbose_name=_("matched phone"), max_length=20, blank=True)
    matched_at = models.DateTimeField(verbose_name=_("matched at"), default=timezone.now)
    # No index on these two: auto-match writes ~100k mappings in one statement and every index costs it
    # time, while the admin's sync-status filter scans a few hundred thousand rows in milliseconds.
    matched_by_user = models.ForeignKey("auth.User", verbose_name=_("matched by user"), null=True, blank=True,
                                        on_delete=models.SET_NULL,
                                        related_name="+", db_index=False)
    sync_status = models.CharField(verbose_name=_("sync status"), max_length=10, choices=SyncStatus.choices,
                                   default=SyncStatus.PENDING)
    synced_at = models.DateTimeField(verbose_name=_("synced at"), null=True, blank=True)
    last_sent_total = models.BigIntegerField(verbose_name=_("last sent total"), null=True, blank=True)
    last_sent_tier = models.CharField(verbose_name=_("last sent tier"), max_length=100, blank=True)
    sync_attempts = models.PositiveIntegerField(verbose_name=_("sync attempts"), default=0)
    last_error = models.TextField(verbose_name=_("last error"), blank=True,
                                  help_text=_("Shopify's userErrors, verbatim."))

    class Meta:
        verbose_name = _("customer mapping")
        verbose_name_plural = _("customer mappings")
        ordering = ["-matched_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["shopify_customer"], condition=models.Q(is_active=True),
                                    name="one_active_mapping_per_shopify_customer"),
        ]
        permissions = [
            ("run_automatch", "Can run customer auto-match"),
            ("sync_to_shopify", "Can sync customers to Shopify"),
        ]

    def __str__(self):
        arrow = "↔" if self.is_active else "✕"
        return f"Nhanh #{self.nhanh_customer.nhanh_id} {arrow} Shopify #{self.shopify_customer.shopify_id}"


class AmbiguousMatch(models.Model):
    """A Nhanh customer whose phones point at several Shopify customers, or whose only Shopify candidate is
    claimed by other Nhanh customers too. Reported for staff to decide; never guessed. Replaced by each
    auto-match run."""

    nhanh_customer = models.ForeignKey(NhanhCustomer, verbose_name=_("nhanh customer"), on_delete=models.CASCADE,
                                       related_name="+")
    phones = models.JSONField(verbose_name=_("phones"), default=list)
    shopify_candidates = models.JSONField(verbose_name=_("shopify candidates"), default=list,
                                          help_text=_("Shopify customer ids sharing a phone."))
    nhanh_rivals = models.JSONField(verbose_name=_("nhanh rivals"), default=list,
                                    help_text=_("Other Nhanh customer ids claiming them."))
    detected_at = models.DateTimeField(verbose_name=_("detected at"), default=timezone.now)

    class Meta:
        verbose_name = _("ambiguous match")
        ordering = ["nhanh_customer_id"]
        verbose_name_plural = _("ambiguous matches")

    def __str__(self):
        return gettext("Nhanh customer %(id)s: %(n)d candidates") % {"id": self.nhanh_customer_id,
                                                                       "n": len(self.shopify_candidates)}


DEFAULT_LOYALTY_TIERS = [("Member", 0), ("Bronze", 3_000_000), ("Silver", 6_000_000), ("Gold", 10_000_000),
                         ("Platinum", 20_000_000), ("Diamond", 100_000_000)]


class LoyaltyTier(models.Model):
    """Tiers by lifetime total spent (VND); editable in the admin. The highest threshold reached wins."""

    name = models.CharField(verbose_name=_("name"), max_length=100, unique=True)
    min_total = models.BigIntegerField(verbose_name=_("min total"), unique=True,
                                       help_text=_("Lowest lifetime total (VND) of this tier."))

    class Meta:
        verbose_name = _("loyalty tier")
        verbose_name_plural = _("loyalty tiers")
        ordering = ["min_total"]

    def __str__(self):
        return f"{self.name} (≥ {vnd(self.min_total)})"
