"""The one write layer of the ads app; admin, commands and tasks call these."""

from __future__ import annotations

from .budgets import run_budget_scheduler  # noqa: F401
from .sync import (  # noqa: F401
    RunRefused,
    cleanup_queue,
    cleanup_stuck,
    enqueue_all,
    enqueue_shop,
    process_queue,
    reset_shop,
    retry_failed_chunks,
    start_shop_sync,
    status_rows,
)


def setup_sandbox_shops(sandbox_url: str) -> list[str]:
    """Add (or refresh) a Shop for every shop of the Shopee sandbox at ``sandbox_url`` and authorize each
    through the real token exchange (a one-time code from the sandbox, then ``auth/token/get``). Returns
    lines to print. ``manage.py demo`` calls this."""
    import requests

    from integrations.sandbox.server import control
    from integrations.shopee import sandbox as sbx

    from ..models import Shop
    from .tokens import authorize_with_code

    base = sandbox_url.rstrip("/")
    status = requests.get(f"{base}/_sandbox/shopee/status", timeout=10)
    status.raise_for_status()
    lines = []
    for shop_id, count in status.json()["shops"].items():
        shop, _ = Shop.objects.update_or_create(shop_id=int(shop_id), defaults={
            "name": f"Sandbox shop ({int(count):,} campaigns)", "base_url": f"{base}/shopee",
            "partner_id": sbx.SANDBOX_PARTNER_ID, "partner_key": sbx.SANDBOX_PARTNER_KEY, "is_sandbox": True})
        code = control(base, "shopee", "authorize", {"shop_id": int(shop_id)})["result"]["code"]
        authorize_with_code(shop, code)
        lines.append(f"Shopee shop {shop_id} → {base}/shopee ({int(count):,} campaigns, authorized)")
    return lines
