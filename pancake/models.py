"""Pancake pages and their customers (the people who chat with the page), linked by phone to Nhanh customers."""

from django.db import models
from django.utils import timezone

from integrations.secrets import mask_secret
from jobs.ingest import UpstreamRecord


class PancakePage(models.Model):
    """A Facebook (or Zalo, …) page connected through Pancake. Tokens are secrets: masked in the admin and in
    repr(), never logged."""

    page_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255, blank=True)
    page_access_token = models.TextField(blank=True, help_text="Regenerated from the user token when Pancake "
                                                                "rejects it (which invalidates the old one).")
    user_access_token = models.TextField(blank=True, help_text="A page admin's Pancake user token (90 days).")
    enabled = models.BooleanField(default=True)
    token_renewed_at = models.DateTimeField(null=True, blank=True)
    # Where the next runs must start at the latest, after a run that may have missed rows (a results page that
    # failed, rows entering the window while it paged): the incremental re-reads from ``incremental_floor``,
    # the backfill up to ``backfill_ceiling``. Cleared by the next clean run.
    incremental_floor = models.DateTimeField(null=True, blank=True, editable=False)
    backfill_ceiling = models.DateTimeField(null=True, blank=True, editable=False)

    SECRET_FIELDS = ("page_access_token", "user_access_token")

    class Meta:
        ordering = ["page_id"]
        permissions = [("run_pancake_link", "Can link Pancake customers to Nhanh customers")]

    def __str__(self):
        return f"{self.name or 'Page'} ({self.page_id})"

    def __repr__(self):
        return f"<PancakePage {self.page_id} token={mask_secret(self.page_access_token)}>"


class PancakeCustomer(UpstreamRecord):
    """One chat partner of one page: unique per (page, psid); Pancake's own customer id is kept but not a key."""

    key = models.CharField(max_length=160, unique=True, editable=False, help_text="page_id:psid (the upsert key)")
    page = models.ForeignKey(PancakePage, to_field="page_id", db_column="page_id", on_delete=models.CASCADE,
                             related_name="customers")
    psid = models.CharField(max_length=64)
    pancake_id = models.CharField(max_length=64, blank=True, help_text="page_customer_id (uuid)")
    name = models.CharField(max_length=255, blank=True)
    phone_numbers = models.JSONField(default=list, blank=True, help_text="As typed in the chat.")
    gender = models.CharField(max_length=16, blank=True)
    birthday = models.DateField(null=True, blank=True)
    upstream_inserted_at = models.DateTimeField(null=True, blank=True)
    upstream_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-upstream_updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["page", "psid"], name="uniq_pancake_page_psid")]
        # Newest-first (incremental's since) and oldest-first (backfill's until) per page: one B-tree serves both
        # directions (PostgreSQL and SQLite scan it backwards for ORDER BY … DESC LIMIT 1).
        indexes = [models.Index(fields=["page", "upstream_updated_at"], name="pancake_cust_page_updated")]

    def __str__(self):
        return f"{self.name or '(no name)'} · page {self.page_id} psid {self.psid}"


class PancakeCustomerPhone(models.Model):
    customer = models.ForeignKey(PancakeCustomer, on_delete=models.CASCADE, related_name="phones")
    e164 = models.CharField(max_length=20, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_pancake_customer_phone")]

    def __str__(self):
        return self.e164


class PancakeNhanhLink(models.Model):
    """A Pancake chat partner is this Nhanh customer (by phone). One link per Pancake customer; a Nhanh customer
    may have several (chats on several pages)."""

    pancake_customer = models.OneToOneField(PancakeCustomer, on_delete=models.CASCADE, related_name="nhanh_link")
    nhanh_customer = models.ForeignKey("customers.NhanhCustomer", on_delete=models.CASCADE,
                                       related_name="pancake_links")
    matched_phone = models.CharField(max_length=20, blank=True)
    matched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-matched_at", "-id"]

    def __str__(self):
        return f"Pancake {self.pancake_customer_id} → Nhanh {self.nhanh_customer_id}"


class PancakeAmbiguousLink(models.Model):
    """A Pancake customer whose phones point at several Nhanh customers: listed for staff, never guessed."""

    pancake_customer = models.ForeignKey(PancakeCustomer, on_delete=models.CASCADE, related_name="+")
    phones = models.JSONField(default=list)
    nhanh_candidates = models.JSONField(default=list, help_text="Nhanh customer row ids sharing a phone.")
    detected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pancake_customer_id"]

    def __str__(self):
        return f"Pancake customer {self.pancake_customer_id}: {len(self.nhanh_candidates)} candidates"
