"""Every write to product mappings besides the sync's bookkeeping: auto-match's INSERT (through ``writing``),
manual match and unmatch. Each runs in its own durable transaction under the product-mapping lock
(jobs.locks.LockKey.PRODUCT_MAPPINGS), so a second auto-match waits and then finds nothing new and no manual match
slips in between an auto-match's SELECT and its INSERT; the partial unique constraint (one active mapping per
Shopify variant) backs this up."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import SyncStatus
from jobs.locks import LockKey, advisory_xact_lock

from ..models import AmbiguousSku, NhanhProduct, ProductMapping, ProductMatchedBy, ShopifyVariant


class MappingError(ValueError):
    pass


@contextmanager
def writing():
    """A durable transaction holding the product-mapping lock; yields a cursor for set-based SQL."""
    with transaction.atomic(durable=True):
        advisory_xact_lock(LockKey.PRODUCT_MAPPINGS)
        with connection.cursor() as cur:
            yield cur


def match_manually(nhanh_product_id: int, shopify_variant_id: int, *, user=None) -> ProductMapping:
    """Staff's match wins over anything auto-match did or would do (for this Nhanh product and variant)."""
    with writing():
        nhanh = NhanhProduct.objects.filter(pk=nhanh_product_id).first()
        variant = ShopifyVariant.objects.filter(pk=shopify_variant_id).first()
        if nhanh is None or variant is None:
            raise MappingError(_("No such Nhanh product or Shopify variant."))
        taken = ProductMapping.objects.filter(shopify_variant_id=shopify_variant_id, is_active=True).exclude(
            nhanh_product_id=nhanh_product_id).select_related("nhanh_product").first()
        if taken:
            raise MappingError(_("That Shopify variant is already matched to %(product)s; unmatch it first.")
                               % {"product": taken.nhanh_product})
        mapping, _created = ProductMapping.objects.update_or_create(
            nhanh_product_id=nhanh_product_id,
            defaults={"shopify_variant_id": shopify_variant_id, "is_active": True,
                      "matched_by": ProductMatchedBy.MANUAL, "matched_sku": "", "matched_at": timezone.now(),
                      "matched_by_user": user, "sync_status": SyncStatus.PENDING, "last_error": "",
                      "sync_attempts": 0, "last_sent_stock": {}, "last_sent_price": None,
                      "last_sent_compare_at_price": None, "synced_at": None},
        )
        # Decided by staff: no longer ambiguous for these two.
        for ambiguous in AmbiguousSku.objects.filter(sku_key__in={nhanh.sku_key, variant.sku_key} - {""}):
            ambiguous.nhanh_product_ids = [i for i in ambiguous.nhanh_product_ids if i != nhanh.nhanh_id]
            ambiguous.shopify_variant_ids = [i for i in ambiguous.shopify_variant_ids if i != variant.shopify_id]
            ambiguous.save(update_fields=["nhanh_product_ids", "shopify_variant_ids"])
    return mapping


def unmatch(mappings, *, user=None) -> int:
    """Keep the row, inactive and marked manual: auto-match then leaves this Nhanh product alone (and the Shopify
    variant is free to be matched to another product)."""
    with writing():
        return ProductMapping.objects.filter(pk__in=[m.pk for m in mappings], is_active=True).update(
            is_active=False, matched_by=ProductMatchedBy.MANUAL, matched_by_user=user, matched_at=timezone.now())
