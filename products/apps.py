from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProductsConfig(AppConfig):
    name = "products"
    verbose_name = _("Products")

    def ready(self):
        # The catalog side (pulls, auto-match) and the sync side (stock/prices to Shopify, Nhanh webhooks) register
        # their job types, pull specs and schedules from their own modules.
        from .services import catalog_setup, sync_setup

        catalog_setup.register()
        sync_setup.register()
