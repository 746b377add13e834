"""Registers the catalog side of products: pull specs (Nhanh and Shopify products, Shopify locations) and the
SKU auto-match job type."""


def register() -> None:
    pass
