"""Celery entry points of the product sync (thin callers of the services): the auto-sync schedule, a Nhanh
webhook delivery, and the coalesced stock sync that webhooks queue."""

from celery import shared_task

from jobs.models import StartedBy

LIMITS = {"time_limit": 3600, "soft_time_limit": 3540}


@shared_task(name="products.sync_stock", expires=600, **LIMITS)
def sync_stock() -> dict:
    """The auto-sync schedule: every mapping, only the levels that differ."""
    from .services.sync import start_product_sync

    job = start_product_sync(scope="all", started_by=StartedBy.BEAT, run_now=True)
    return {"job_id": job.pk}


@shared_task(name="products.process_nhanh_webhook", acks_late=True, time_limit=300, soft_time_limit=280)
def process_nhanh_webhook(delivery_id: int) -> str:
    from .services.webhooks import process_delivery

    return process_delivery(delivery_id)


@shared_task(name="products.drain_stock_syncs", acks_late=True, **LIMITS)
def drain_stock_syncs() -> dict:
    from .services.webhooks import drain_pending_syncs

    return drain_pending_syncs()
