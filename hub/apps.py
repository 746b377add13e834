from django.apps import AppConfig


class HubConfig(AppConfig):
    """Where the project is assembled: the admin site's titles and the commands that set the whole hub up
    (``demo``, ``install_schedules``). It may import every app; no app imports it."""

    name = "hub"
    verbose_name = "ShopBridge"

    def ready(self):
        from django.contrib import admin

        admin.site.site_header = "ShopBridge"
        admin.site.site_title = "ShopBridge admin"
        admin.site.index_title = "Nhanh · Shopify · Pancake · Shopee"
