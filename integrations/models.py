from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models

from .secrets import SecretField, mask_secret


def check_base_url(url: str) -> None:
    """Refuse credentials written into a URL (``http://user:token@host``): they would show wherever the URL
    does (lists, logs, job errors); they belong in the secret fields."""
    parts = urlsplit(url or "")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValidationError("Put credentials in the secret fields, not in the URL (user:password@…).")


def same_host(a: str, b: str) -> bool:
    """Same scheme, host and port: where a stored secret may be sent."""
    pa, pb = urlsplit(a or ""), urlsplit(b or "")
    return (pa.scheme, (pa.hostname or "").lower(), pa.port) == (pb.scheme, (pb.hostname or "").lower(), pb.port)


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
        max_length=300, validators=[check_base_url],
        help_text="Nhanh: https://pos.open.nhanh.vn · Shopify: https://YOUR-SHOP.myshopify.com",
    )
    api_version = models.CharField(max_length=20, blank=True, help_text="Shopify: e.g. 2026-10. Nhanh: 3.0.")
    app_id = models.CharField(max_length=100, blank=True, help_text="Nhanh appId / Pancake or Shopee partner id.")
    business_id = models.CharField(max_length=100, blank=True, help_text="Nhanh businessId.")
    access_token = SecretField(blank=True, help_text="Shopify: a legacy custom-app token (shpat_…, never "
                                    "expires); leave empty when the app uses a client id and secret.")
    secret_key = SecretField(blank=True, help_text="Nhanh secretKey / client secret, when the API needs one.")
    # Shopify Dev Dashboard app: the client-credentials grant gives a token that lasts ~24 h.
    client_id = models.CharField(max_length=100, blank=True,
                                 help_text="Shopify: the app's client id (Dev Dashboard → app → Settings). With "
                                           "the client secret, used instead of an access token.")
    client_secret = SecretField(blank=True, help_text="Shopify: the app's client secret (shpss_…).")
    # The token obtained with the client id + secret, shared by every worker; renewed before it expires.
    issued_token = SecretField(blank=True, editable=False)
    issued_token_obtained_at = models.DateTimeField(null=True, blank=True, editable=False)
    issued_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Nhanh: the webhook verify token of the app (16–128 alphanumerics); a delivery's Authorization header
    # must equal it, else 401 and nothing is stored.
    webhook_verify_token = SecretField(blank=True, help_text="Nhanh: the app's webhook verify token (as entered "
                                       "on open.nhanh.vn). Deliveries without it are refused.")
    requests_per_window = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Client-side request cap (Nhanh documents 150 per 30 s per URL). Empty: no client cap.",
    )
    window_seconds = models.PositiveIntegerField(default=30)
    is_sandbox = models.BooleanField(default=False, help_text="Points at the local sandbox (demo/tests).")
    updated_at = models.DateTimeField(auto_now=True)

    SECRET_FIELDS = ("access_token", "secret_key", "client_secret", "issued_token", "webhook_verify_token")

    class Meta:
        ordering = ["system"]

    def __str__(self):
        return f"{self.get_system_display()} ({self.base_url})"

    def __repr__(self):  # never let a token reach a log through repr()
        credential = (f"client_id={self.client_id}" if self.client_id and self.client_secret
                      else f"token={mask_secret(self.access_token)}")
        return f"<Connection {self.system} {self.base_url} {credential}>"

    @property
    def uses_client_credentials(self) -> bool:
        return bool(self.client_id and self.client_secret)

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
