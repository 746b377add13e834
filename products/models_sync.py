"""The sync side's own tables: stock pushes saved before they are sent (their idempotency key and exact input, so a
retry after a dropped connection repeats the same request), mappings waiting for a coalesced sync, and the Nhanh
webhook deliveries. Imported by ``products.models`` (one app, one models module for Django)."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class StockPush(models.Model):
    """One ``inventorySetQuantities`` call, committed before it is sent and deleted once its answer is recorded.

    Shopify replays a request sent again with the same ``@idempotent`` key and the same variables (the first
    result, nothing applied twice), so a push whose answer never arrived (connection dropped, worker killed) is
    sent again exactly as it was: same key, same ``input``. ``owners`` lists the product mapping of each quantity
    (same order as ``input.quantities``)."""

    idempotency_key = models.CharField(_("idempotency key"), max_length=64, unique=True)
    input = models.JSONField(_("input"), help_text=_("InventorySetQuantitiesInput as sent."))
    owners = models.JSONField(_("mappings"), default=list, help_text=_("Product mapping id of each quantity."))
    stale_retry = models.BooleanField(_("stale retry"), default=False,
                                      help_text=_("Sent again after CHANGE_FROM_QUANTITY_STALE: not retried twice."))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    claimed_at = models.DateTimeField(_("being sent since"), null=True, blank=True,
                                      help_text=_("A sync sending it now; a claim older than the stale window may be "
                                                  "taken over."))
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("stock push awaiting an answer")
        verbose_name_plural = _("stock pushes awaiting an answer")

    def __str__(self):
        return f"{len(self.owners)} level(s) · key {self.idempotency_key[:8]}…"


class PendingStockSync(models.Model):
    """A mapped product whose Nhanh stock changed (webhook): one row however many events arrive; a delayed task
    claims the rows (DELETE … RETURNING) and syncs just those mappings in one go."""

    mapping = models.OneToOneField("products.ProductMapping", verbose_name=_("product mapping"),
                                   on_delete=models.CASCADE, related_name="+")
    queued_at = models.DateTimeField(_("queued at"), default=timezone.now)

    class Meta:
        verbose_name = _("pending stock sync")
        verbose_name_plural = _("pending stock syncs")

    def __str__(self):
        return f"mapping {self.mapping_id} since {self.queued_at:%H:%M:%S}"


class WebhookOutcome(models.TextChoices):
    QUEUED = "queued", _("Queued")
    PROCESSING = "processing", _("Processing")
    PROCESSED = "processed", _("Processed")
    REPLAY = "replay", _("Replay (ignored)")
    IGNORED = "ignored", _("Ignored")
    FAILED = "failed", _("Failed")


class NhanhWebhookDelivery(models.Model):
    """Every authenticated delivery of a Nhanh webhook (a refused one stores nothing). ``digest`` is the SHA-256 of
    the body: a body seen within the replay window is recorded as a replay and changes nothing."""

    event = models.CharField(_("event"), max_length=64, db_index=True)
    business_id = models.CharField(_("business id"), max_length=64, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    digest = models.CharField(_("digest"), max_length=64, db_index=True)
    is_first = models.BooleanField(_("first of its digest"), default=True,
                                   help_text=_("False for a replay of a body already received."))
    outcome = models.CharField(_("outcome"), max_length=12, choices=WebhookOutcome.choices,
                               default=WebhookOutcome.QUEUED, db_index=True)
    detail = models.TextField(_("detail"), blank=True)
    product_ids = models.JSONField(_("Nhanh products"), default=list, blank=True)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("Nhanh webhook delivery")
        verbose_name_plural = _("Nhanh webhook deliveries")
        constraints = [models.UniqueConstraint(fields=["digest"], condition=models.Q(is_first=True),
                                               name="one_first_delivery_per_digest")]

    def __str__(self):
        return f"{self.event} · {self.received_at:%Y-%m-%d %H:%M:%S} · {self.get_outcome_display()}"
