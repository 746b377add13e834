"""Registers the sync side of products: stock/price sync job types (PRODUCT_SYNC and the "products" target of
RETRY_FAILED_SYNC), ``manage.py sync_shopify products``, the auto-sync schedule (off by default) and the Nhanh
webhook tasks."""


def register() -> None:
    from config.schedules import Schedule
    from config.schedules import register as register_schedules

    from .. import admin_sync, operations_sync, tasks_sync  # noqa: F401 - tasks and the deliveries' admin register on import
    from . import sync

    sync.register()
    operations_sync.register()
    register_schedules(
        Schedule("Products: stock auto-sync", "products.sync_stock", "*/15 * * * *", 600, enabled=False,
                 description="Every 15 minutes, send the stock levels that differ from Shopify's (and prices "
                             "when SHOPBRIDGE_PRODUCT_SYNC_PRICES is on) for every mapped product.",
                 permissions=("products.sync_products",)),
    )
