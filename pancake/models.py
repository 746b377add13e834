"""Pancake pages and their customers (the people who chat with the page), linked by phone to Nhanh customers."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from integrations.secrets import SecretField, mask_secret
from jobs.ingest import UpstreamRecord


class PancakePage(models.Model):
    """A Facebook (or Zalo, …) page connected through Pancake. Tokens are secrets: masked in the admin and in
    repr(), never logged."""

    page_id = models.CharField(verbose_name=_("page id"), max_length=64, unique=True)
    name = models.CharField(verbose_name=_("name"), max_length=255, blank=True)
    page_access_token = SecretField(verbose_name=_("page access token"), blank=True,
                                    help_text=_("Regenerated from the user token when Pancake "
                                                                "rejects it (which invalidates the old one)."))
    user_access_token = SecretField(verbose_name=_("user access token"), blank=True,
                                    help_text=_("A page admin's Pancake user token (90 days)."))
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True)
    token_renewed_at = models.DateTimeField(verbose_name=_("token renewed at"), null=True, blank=True)
    # Where the next runs must start at the latest, after a run that may have missed rows (a results page that
    # failed, rows entering the window while it paged): the incremental re-reads from ``incremental_floor``,
    # the backfill up to ``backfill_ceiling``. Cleared by the next clean run.
    incremental_floor = models.DateTimeField(verbose_name=_("incremental floor"), null=True, blank=True, editable=False)
    backfill_ceiling = models.DateTimeField(verbose_name=_("backfill ceiling"), null=True, blank=True, editable=False)

    SECRET_FIELDS = ("page_access_token", "user_access_token")

    class Meta:
        verbose_name = _("pancake page")
        verbose_name_plural = _("pancake pages")
        ordering = ["page_id"]
        permissions = [("run_pancake_link", "Can link Pancake customers to Nhanh customers")]

    def __str__(self):
        return f"{self.name or gettext('Page')} ({self.page_id})"

    def __repr__(self):
        return f"<PancakePage {self.page_id} token={mask_secret(self.page_access_token)}>"


class PancakeCustomer(UpstreamRecord):
    """One chat partner of one page: unique per (page, psid); Pancake's own customer id is kept but not a key."""

    key = models.CharField(verbose_name=_("key"), max_length=160, unique=True, editable=False,
                           help_text=_("page_id:psid (the upsert key)"))
    page = models.ForeignKey(PancakePage, verbose_name=_("page"), to_field="page_id", db_column="page_id",
                             on_delete=models.CASCADE,
                             related_name="customers")
    psid = models.CharField(verbose_name=_("psid"), max_length=64)
    pancake_id = models.CharField(verbose_name=_("pancake id"), max_length=64, blank=True,
                                  help_text=_("page_customer_id (uuid)"))
    name = models.CharField(verbose_name=_("name"), max_length=255, blank=True)
    phone_numbers = models.JSONField(verbose_name=_("phone numbers"), default=list, blank=True,
                                     help_text=_("As typed in the chat."))
    gender = models.CharField(verbose_name=_("gender"), max_length=16, blank=True)
    birthday = models.DateField(verbose_name=_("birthday"), null=True, blank=True)
    upstream_inserted_at = models.DateTimeField(verbose_name=_("upstream inserted at"), null=True, blank=True)
    upstream_updated_at = models.DateTimeField(verbose_name=_("upstream updated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("pancake customer")
        verbose_name_plural = _("pancake customers")
        ordering = ["-upstream_updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["page", "psid"], name="uniq_pancake_page_psid")]
        # Newest-first (incremental's since) and oldest-first (backfill's until) per page: one B-tree serves both
        # directions (PostgreSQL and SQLite scan it backwards for ORDER BY … DESC LIMIT 1).
        indexes = [models.Index(fields=["page", "upstream_updated_at"], name="pancake_cust_page_updated")]

    def __str__(self):
        return gettext("%(name)s · page %(page)s psid %(psid)s") % {
            "name": self.name or gettext("(no name)"), "page": self.page_id, "psid": self.psid}


class PancakeCustomerPhone(models.Model):
    customer = models.ForeignKey(PancakeCustomer, verbose_name=_("customer"), on_delete=models.CASCADE,
                                 related_name="phones")
    e164 = models.CharField(verbose_name=_("e164"), max_length=20, db_index=True)

    class Meta:
        verbose_name = _("pancake customer phone")
        verbose_name_plural = _("pancake customer phones")
        constraints = [models.UniqueConstraint(fields=["customer", "e164"], name="uniq_pancake_customer_phone")]

    def __str__(self):
        return self.e164


class PancakeNhanhLink(models.Model):
    """A Pancake chat partner is this Nhanh customer (by phone). One link per Pancake customer; a Nhanh customer
    may have several (chats on several pages)."""

    pancake_customer = models.OneToOneField(PancakeCustomer, verbose_name=_("pancake customer"),
                                            on_delete=models.CASCADE, related_name="nhanh_link")
    nhanh_customer = models.ForeignKey("customers.NhanhCustomer", verbose_name=_("nhanh customer"),
                                       on_delete=models.CASCADE,
                                       related_name="pancake_links")
    matched_phone = models.CharField(verbose_name=_("matched phone"), max_length=20, blank=True)
    matched_at = models.DateTimeField(verbose_name=_("matched at"), default=timezone.now)

    class Meta:
        verbose_name = _("pancake nhanh link")
        verbose_name_plural = _("pancake nhanh links")
        ordering = ["-matched_at", "-id"]

    def __str__(self):
        return f"Pancake {self.pancake_customer_id} → Nhanh {self.nhanh_customer_id}"


class PancakeAmbiguousLink(models.Model):
    """A Pancake customer whose phones point at several Nhanh customers: listed for staff, never guessed."""

    pancake_customer = models.ForeignKey(PancakeCustomer, verbose_name=_("pancake customer"), on_delete=models.CASCADE,
                                         related_name="+")
    phones = models.JSONField(verbose_name=_("phones"), default=list)
    nhanh_candidates = models.JSONField(verbose_name=_("nhanh candidates"), default=list,
                                        help_text=_("Nhanh customer row ids sharing a phone."))
    detected_at = models.DateTimeField(verbose_name=_("detected at"), default=timezone.now)

    class Meta:
        verbose_name = _("pancake ambiguous link")
        verbose_name_plural = _("pancake ambiguous links")
        ordering = ["pancake_customer_id"]

    def __str__(self):
        return gettext("Pancake customer %(id)s: %(n)d candidates") % {"id": self.pancake_customer_id,
                                                                         "n": len(self.nhanh_candidates)}
