from django.db import models
from django.utils import timezone

from jobs.ingest import UpstreamRecord


class CustomerType(models.IntegerChoices):
    RETAIL = 1, "Retail"
    WHOLESALE = 2, "Wholesale"
    AGENT = 3, "Agent"


class PhoneSource(models.TextChoices):
    NHANH_MOBILE = "nhanh_mobile", "Nhanh mobile"
    SHOPIFY_PHONE = "shopify_phone", "Shopify phone"
    SHOPIFY_ADDRESS = "shopify_address", "Shopify default address"
    SHOPIFY_NOTE = "shopify_note", "Shopify note"


class NhanhCustomer(UpstreamRecord):
    nhanh_id = models.BigIntegerField(unique=True)
    name = models.CharField(max_length=255, blank=True)
    mobile = models.CharField(max_length=64, blank=True, help_text="As typed in Nhanh.")
    email = models.CharField(max_length=254, blank=True)
    customer_type = models.PositiveSmallIntegerField(choices=CustomerType.choices, null=True, blank=True)
    address = models.TextField(blank=True)
    total_spent = models.BigIntegerField(default=0, help_text="Lifetime spend in VND (Nhanh totalAmount).")
    points = models.IntegerField(null=True, blank=True)
    upstream_updated_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-upstream_updated_at", "-id"]

    def __str__(self):
        return f"{self.name or '(no name)'} · Nhanh #{self.nhanh_id}"


class ShopifyCustomer(UpstreamRecord):
    shopify_id = models.BigIntegerField(unique=True, help_text="legacyResourceId")
    first_name = models.CharField(max_length=255, blank=True)
    last_name = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=254, blank=True)
    phone = models.CharField(max_length=64, blank=True, help_text="Default phone number (E.164 in Shopify).")
    address_phone = models.CharField(max_length=64, blank=True, help_text="Default address phone, as typed.")
    note = models.TextField(blank=True)
    state = models.CharField(max_length=20, blank=True)
    tags = models.JSONField(default=list, blank=True)
    orders_count = models.IntegerField(default=0)
    amount_spent = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    upstream_created_at = models.DateTimeField(null=True, blank=True)
    upstream_updated_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-upstream_updated_at", "-id"]

    def __str__(self):
        name = f"{self.last_name} {self.first_name}".strip()
        return f"{name or self.email or '(no name)'} · Shopify #{self.shopify_id}"

    @property
    def gid(self) -> str:
        return f"gid://shopify/Customer/{self.shopify_id}"


class CustomerPhone(models.Model):
    """One valid phone of a customer in E.164 (indexed): what auto-match joins on."""

    e164 = models.CharField(max_length=20, db_index=True)
    source = models.CharField(max_length=20, choices=PhoneSource.choices)

    class Meta:
        abstract = True

    def __str__(self):
        return self.e164


class NhanhCustomerPhone(CustomerPhone):
    customer = models.ForeignKey(NhanhCustomer, on_delete=models.CASCADE, related_name="phones")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_nhanh_customer_phone")]


class ShopifyCustomerPhone(CustomerPhone):
    """Phone, default address phone and numbers written in the note."""

    customer = models.ForeignKey(ShopifyCustomer, on_delete=models.CASCADE, related_name="phones")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_shopify_customer_phone")]


class MatchedBy(models.TextChoices):
    PHONE = "phone", "Phone (auto-match)"
    MANUAL = "manual", "Manual"
    CREATED = "created", "Created in Shopify"


class SyncStatus(models.TextChoices):
    PENDING = "pending", "Not synced yet"
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed"


class CustomerMapping(models.Model):
    """A Nhanh customer ↔ Shopify customer pair, and how its loyalty data was last sent to Shopify.

    ``is_active=False`` records that staff unmatched the pair: auto-match never touches a Nhanh customer
    that has any mapping row, so manual decisions are never overwritten."""

    nhanh_customer = models.OneToOneField(NhanhCustomer, on_delete=models.CASCADE, related_name="mapping")
    shopify_customer = models.ForeignKey(ShopifyCustomer, on_delete=models.CASCADE, related_name="mappings")
    is_active = models.BooleanField(default=True)
    matched_by = models.CharField(max_length=10, choices=MatchedBy.choices)
    matched_phone = models.CharField(max_length=20, blank=True)
    matched_at = models.DateTimeField(default=timezone.now)
    # No index on these two: auto-match writes ~100k mappings in one statement and every index costs it
    # time, while the admin's sync-status filter scans a few hundred thousand rows in milliseconds.
    matched_by_user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+", db_index=False)
    sync_status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    synced_at = models.DateTimeField(null=True, blank=True)
    last_sent_total = models.BigIntegerField(null=True, blank=True)
    last_sent_tier = models.CharField(max_length=100, blank=True)
    sync_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, help_text="Shopify's userErrors, verbatim.")

    class Meta:
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

    nhanh_customer = models.ForeignKey(NhanhCustomer, on_delete=models.CASCADE, related_name="+")
    phones = models.JSONField(default=list)
    shopify_candidates = models.JSONField(default=list, help_text="Shopify customer ids sharing a phone.")
    nhanh_rivals = models.JSONField(default=list, help_text="Other Nhanh customer ids claiming them.")
    detected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["nhanh_customer_id"]
        verbose_name_plural = "ambiguous matches"

    def __str__(self):
        return f"Nhanh customer {self.nhanh_customer_id}: {len(self.shopify_candidates)} candidates"


DEFAULT_LOYALTY_TIERS = [("Member", 0), ("Bronze", 3_000_000), ("Silver", 6_000_000), ("Gold", 10_000_000),
                         ("Platinum", 20_000_000), ("Diamond", 100_000_000)]


class LoyaltyTier(models.Model):
    """Tiers by lifetime total spent (VND); editable in the admin. The highest threshold reached wins."""

    name = models.CharField(max_length=100, unique=True)
    min_total = models.BigIntegerField(unique=True, help_text="Lowest lifetime total (VND) of this tier.")

    class Meta:
        ordering = ["min_total"]

    def __str__(self):
        return f"{self.name} (≥ {self.min_total:,} VND)"
