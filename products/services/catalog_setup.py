"""Registers the catalog side of products: pull specs (Nhanh and Shopify products, Shopify locations with the
latter) and the SKU auto-match job type and ``automatch products`` command target."""


def register() -> None:
    from . import automatch, pulls

    pulls.register()
    automatch.register()
