"""Every write to customer mappings: auto-match's INSERT (through ``writing``), manual match, unmatch and the
mappings of customers the sync created. Each runs in its own durable transaction under the mapping lock
(jobs.locks.LockKey.CUSTOMER_MAPPINGS), so a second auto-match waits and then finds nothing new, and no manual
match can slip in between an auto-match's SELECT and its INSERT."""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from jobs.locks import LockKey, advisory_xact_lock

from ..models import AmbiguousMatch, CustomerMapping, MatchedBy, NhanhCustomer, ShopifyCustomer, SyncStatus


class MappingError(ValueError):
    pass


@contextmanager
def writing():
    """A durable transaction holding the mapping lock; yields a cursor for set-based SQL."""
    with transaction.atomic(durable=True):
        advisory_xact_lock(LockKey.CUSTOMER_MAPPINGS)
        with connection.cursor() as cur:
            yield cur


def match_manually(nhanh_customer_id: int, shopify_customer_id: int, *, user=None) -> CustomerMapping:
    """Staff's match wins over anything auto-match did or would do (for these two customers)."""
    with writing():
        taken = CustomerMapping.objects.filter(shopify_customer_id=shopify_customer_id, is_active=True).exclude(
            nhanh_customer_id=nhanh_customer_id).select_related("nhanh_customer").first()
        if taken:
            raise MappingError(gettext("That Shopify customer is already matched to %(nhanh)s; unmatch it first.")
                               % {"nhanh": taken.nhanh_customer})
        mapping, _ = CustomerMapping.objects.update_or_create(
            nhanh_customer_id=nhanh_customer_id,
            defaults={"shopify_customer_id": shopify_customer_id, "is_active": True, "matched_by": MatchedBy.MANUAL,
                      "matched_phone": "", "matched_at": timezone.now(), "matched_by_user": user,
                      "sync_status": SyncStatus.PENDING, "last_error": "", "sync_attempts": 0},
        )
        AmbiguousMatch.objects.filter(nhanh_customer_id=nhanh_customer_id).delete()
    return mapping


def unmatch(mappings, *, user=None) -> int:
    """Keep the row, inactive and marked manual: auto-match then leaves this Nhanh customer alone."""
    with writing():
        return CustomerMapping.objects.filter(pk__in=[m.pk for m in mappings], is_active=True).update(
            is_active=False, matched_by=MatchedBy.MANUAL, matched_by_user=user, matched_at=timezone.now())


def map_created_customer(nhanh: NhanhCustomer, shopify_id: int, shopify_fields: dict, *, total: int,
                         tier: str) -> CustomerMapping | None:
    """Map a Nhanh customer to the Shopify customer the sync created (or found) for it, recording what was
    sent. None when staff or another run mapped this Nhanh customer meanwhile, or that Shopify customer is
    already matched to someone else."""
    with writing():
        shopify, _ = ShopifyCustomer.objects.get_or_create(
            shopify_id=shopify_id, defaults={**shopify_fields, "payload_hash": ""})
        if (CustomerMapping.objects.filter(nhanh_customer=nhanh).exists()
                or CustomerMapping.objects.filter(shopify_customer=shopify, is_active=True).exists()):
            return None
        return CustomerMapping.objects.create(
            nhanh_customer=nhanh, shopify_customer=shopify, matched_by=MatchedBy.CREATED,
            sync_status=SyncStatus.SYNCED, synced_at=timezone.now(), last_sent_total=total, last_sent_tier=tier,
            sync_attempts=1)
