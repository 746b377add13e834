from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .secrets import SecretField, mask_secret


def check_base_url(url: str) -> None:
    """Refuse credentials written into a URL (``http://user:token@host``): they would show wherever the URL
    does (lists, logs, job errors); they belong in the secret fields."""
    parts = urlsplit(url or "")
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValidationError(gettext("Put credentials in the secret fields, not in the URL (user:password@…)."))


def same_host(a: str, b: str) -> bool:
    """Same scheme, host and port: where a stored secret may be sent."""
    pa, pb = urlsplit(a or ""), urlsplit(b or "")
    return (pa.scheme, (pa.hostname or "").lower(), pa.port) == (pb.scheme, (pb.hostname or "").lower(), pb.port)


class System(models.TextChoices):
    NHANH = "nhanh", _("Nhanh.vn")
    SHOPIFY = "shopify", _("Shopify")
    PANCAKE = "pancake", _("Pancake")
    SHOPEE = "shopee", _("Shopee")


class Connection(models.Model):
    """Where and how to reach one upstream. Edited in the admin; ``manage.py demo`` points these at the
    sandboxes. Secrets are never logged and the admin shows them masked."""

    system = models.CharField(verbose_name=_("system"), max_length=20, choices=System.choices, unique=True)
    base_url = models.URLField(verbose_name=_("base url"),
        max_length=300, validators=[check_base_url],
        help_text=_("Nhanh: https://pos.open.nhanh.vn · Shopify: https://YOUR-SHOP.myshopify.com"),
    )
    api_version = models.CharField(verbose_name=_("api version"), max_length=20, blank=True,
                                   help_text=_("Shopify: e.g. 2026-10. Nhanh: 3.0."))
    app_id = models.CharField(verbose_name=_("app id"), max_length=100, blank=True,
                              help_text=_("Nhanh appId / Pancake or Shopee partner id."))
    business_id = models.CharField(verbose_name=_("business id"), max_length=100, blank=True,
                                   help_text=_("Nhanh businessId."))
    access_token = SecretField(verbose_name=_("access token"), blank=True,
                               help_text=_("Shopify: a legacy custom-app token (shpat_…, never "
                                    "expires); leave empty when the app uses a client id and secret."))
    secret_key = SecretField(verbose_name=_("secret key"), blank=True,
                             help_text=_("Nhanh secretKey / client secret, when the API needs one."))
    # Shopify Dev Dashboard app: the client-credentials grant gives a token that lasts ~24 h.
    client_id = models.CharField(verbose_name=_("client id"), max_length=100, blank=True,
                                 help_text=_("Shopify: the app's client id (Dev Dashboard → app → Settings). With "
                                           "the client secret, used instead of an access token."))
    client_secret = SecretField(verbose_name=_("client secret"), blank=True,
                                help_text=_("Shopify: the app's client secret (shpss_…)."))
    # The token obtained with the client id + secret, shared by every worker; renewed before it expires.
    issued_token = SecretField(verbose_name=_("issued token"), blank=True, editable=False)
    issued_token_obtained_at = models.DateTimeField(verbose_name=_("issued token obtained at"), null=True, blank=True,
                                                    editable=False)
    issued_token_expires_at = models.DateTimeField(verbose_name=_("issued token expires at"), null=True, blank=True,
                                                   editable=False)
    # Nhanh: the webhook verify token of the app (16–128 alphanumerics); a delivery's Authorization header
    # must equal it, else 401 and nothing is stored.
    webhook_verify_token = SecretField(verbose_name=_("webhook verify token"), blank=True,
                                       help_text=_("Nhanh: the app's webhook verify token (as entered on "
                                                   "open.nhanh.vn). Deliveries without it are refused."))
    requests_per_window = models.PositiveIntegerField(verbose_name=_("requests per window"),
        null=True, blank=True,
        help_text=_("Client-side request cap (Nhanh documents 150 per 30 s per URL). Empty: no client cap."),
    )
    window_seconds = models.PositiveIntegerField(verbose_name=_("window seconds"), default=30)
    is_sandbox = models.BooleanField(verbose_name=_("is sandbox"), default=False,
                                     help_text=_("Points at the local sandbox (demo/tests)."))
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    SECRET_FIELDS = ("access_token", "secret_key", "client_secret", "issued_token", "webhook_verify_token")

    class Meta:
        verbose_name = _("connection")
        verbose_name_plural = _("connections")
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


class UpstreamStatus(models.Model):
    """How the last real calls to one upstream (or one Pancake page, one Shopee shop) went: what the overview's
    connection rows show. Written by the clients (``integrations.status.record_call``) only when the state
    changes or at most once a minute per process, so a pull of thousands of calls writes a handful of rows.

    ``key`` is the system ("nhanh", "shopify", "pancake", "shopee") or "system:sub-id" ("pancake:<page id>",
    "shopee:<shop id>")."""

    key = models.CharField(_("key"), max_length=80, unique=True)
    ok = models.BooleanField(_("OK"), default=True)
    last_ok_at = models.DateTimeField(_("last successful call"), null=True, blank=True)
    last_failure_at = models.DateTimeField(_("last failed call"), null=True, blank=True)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True,
                                         help_text=_("The first failure after the last success."))
    last_error = models.TextField(_("last error"), blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        ordering = ["key"]
        verbose_name = _("upstream status")
        verbose_name_plural = _("upstream statuses")

    def __str__(self):
        return f"{self.key}: {'OK' if self.ok else 'failing'}"
