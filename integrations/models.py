from django.db import models

from .secrets import mask_secret


class System(models.TextChoices):
    NHANH = "nhanh", "Nhanh.vn"
    SHOPIFY = "shopify", "Shopify"
    PANCAKE = "pancake", "Pancake"
    SHOPEE = "shopee", "Shopee"


class Connection(models.Model):
    """Where and how to reach one upstream. Edited in the admin; ``manage.py demo`` points these at the
    sandboxes. Secrets are never logged and the admin shows them masked."""

    system = models.CharField(max_length=20, choices=System.choices, unique=True)
    base_url = models.URLField(
        max_length=300,
        help_text="Nhanh: https://pos.open.nhanh.vn · Shopify: https://YOUR-SHOP.myshopify.com",
    )
    api_version = models.CharField(max_length=20, blank=True, help_text="Shopify: e.g. 2026-10. Nhanh: 3.0.")
    app_id = models.CharField(max_length=100, blank=True, help_text="Nhanh appId / Pancake or Shopee partner id.")
    business_id = models.CharField(max_length=100, blank=True, help_text="Nhanh businessId.")
    access_token = models.TextField(blank=True)
    secret_key = models.TextField(blank=True, help_text="Nhanh secretKey / client secret, when the API needs one.")
    requests_per_window = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Client-side request cap (Nhanh documents 150 per 30 s per URL). Empty: no client cap.",
    )
    window_seconds = models.PositiveIntegerField(default=30)
    is_sandbox = models.BooleanField(default=False, help_text="Points at the local sandbox (demo/tests).")
    updated_at = models.DateTimeField(auto_now=True)

    SECRET_FIELDS = ("access_token", "secret_key")

    class Meta:
        ordering = ["system"]

    def __str__(self):
        return f"{self.get_system_display()} ({self.base_url})"

    def __repr__(self):  # never let a token reach a log through repr()
        return f"<Connection {self.system} {self.base_url} token={mask_secret(self.access_token)}>"

    @property
    def masked_token(self) -> str:
        return mask_secret(self.access_token)


class ConnectionMissing(Exception):
    pass


def get_connection(system: str) -> Connection:
    conn = Connection.objects.filter(system=system).first()
    if conn is None:
        raise ConnectionMissing(
            f"No {System(system).label} connection is configured: add one in the admin "
            "(Integrations → Connections) or run `manage.py demo` to use the sandbox."
        )
    return conn
