"""Registers the sync side of products: stock/price sync job types, the auto-sync schedule, webhook processing."""


def register() -> None:
    pass
