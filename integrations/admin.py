from django import forms
from django.contrib import admin, messages
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .clients import check_connection
from .models import Connection, check_base_url, same_host
from .secrets import mask_secret


class ConnectionForm(forms.ModelForm):
    """Secrets are write-only: the form never sends them back to the browser; leaving the box empty
    keeps the stored value."""

    base_url = forms.URLField(assume_scheme="https", max_length=300, label=capfirst(_("base url")))
    access_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                   label=capfirst(_("access token")))
    secret_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 label=capfirst(_("secret key")))
    client_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                    label=_("Client secret (Shopify)"))
    webhook_verify_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                           label=_("Webhook verify token (Nhanh)"), max_length=128)
    FORM_SECRETS = ("access_token", "secret_key", "client_secret", "webhook_verify_token")
    INCOMING_SECRETS = ("webhook_verify_token",)  # checked on what the upstream sends us, never sent anywhere

    class Meta:
        model = Connection
        fields = (
            "system", "base_url", "api_version", "app_id", "business_id", "access_token", "secret_key",
            "client_id", "client_secret", "webhook_verify_token", "requests_per_window", "window_seconds",
            "is_sandbox",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.FORM_SECRETS:
            current = getattr(self.instance, name, "")
            hint = (gettext("Stored: %(masked)s. Leave empty to keep it.") % {"masked": mask_secret(current)} if current
                    else gettext("Not set."))
            self.fields[name].help_text = hint

    def clean_webhook_verify_token(self):
        token = self.cleaned_data.get("webhook_verify_token") or ""
        if token and not (16 <= len(token) <= 128 and token.isascii() and token.isalnum()):
            raise forms.ValidationError(_("Nhanh's verify token is 16–128 letters and digits."))
        return token

    def clean_base_url(self):
        url = self.cleaned_data["base_url"]
        check_base_url(url)
        return url

    def clean(self):
        data = super().clean()
        moved = bool(self.instance.pk and data.get("base_url") and not same_host(data["base_url"],
                                                                              self.instance.base_url))
        if moved:
            # Stored secrets were entered for the old host: they are never sent to another one. Whoever points
            # the connection elsewhere enters the credentials for that host.
            stored = [name for name in self.FORM_SECRETS if name not in self.INCOMING_SECRETS
                      and getattr(self.instance, name)]
            missing = [self.fields[name].label or name for name in stored if not data.get(name)]
            if missing:
                raise forms.ValidationError(
                    gettext("The host changed: enter the credentials for the new host again (%(fields)s). Stored "
                            "secrets are only ever sent to the host they were entered for.")
                    % {"fields": ", ".join(map(str, missing))})
            self.instance.issued_token = ""
            self.instance.issued_token_obtained_at = self.instance.issued_token_expires_at = None
        for name in self.FORM_SECRETS:
            if not data.get(name) and self.instance.pk and (not moved or name in self.INCOMING_SECRETS):
                data[name] = getattr(self.instance, name)
        if data.get("system") == "shopify":
            if bool(data.get("client_id")) != bool(data.get("client_secret")):
                raise forms.ValidationError(gettext("A Shopify app needs both its client id and its client secret."))
            if not data.get("access_token") and not data.get("client_id"):
                raise forms.ValidationError(gettext("Shopify needs a legacy access token, or a client id and secret."))
            if self.instance.pk and (data.get("client_id") != self.instance.client_id
                                     or data.get("client_secret") != self.instance.client_secret):
                # A token obtained with other credentials must not outlive them.
                self.instance.issued_token = ""
                self.instance.issued_token_obtained_at = self.instance.issued_token_expires_at = None
        return data


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("system", "base_url", "api_version", "token_col", "is_sandbox", "updated_at")
    readonly_fields = ("issued_token_col",)
    actions = ["test_connection"]

    # Staff who may change a connection may test it (it calls the upstream with the stored secrets).
    @admin.action(description=_("Test connection (one authenticated call; changes nothing)"), permissions=["change"])
    def test_connection(self, request, queryset):
        for conn in queryset:
            ok, text = check_connection(conn)
            self.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)

    @admin.display(description=_("Access token"))
    def token_col(self, obj):
        if obj.uses_client_credentials:
            expiry = obj.issued_token_expires_at
            if expiry:
                return gettext("client %(id)s… (token until %(until)s)") % {
                    "id": obj.client_id[:8],
                    "until": formats.date_format(timezone.localtime(expiry), "SHORT_DATETIME_FORMAT")}
            return gettext("client %(id)s… (no token yet)") % {"id": obj.client_id[:8]}
        return obj.masked_token or "—"

    @admin.display(description=_("Token obtained with the client id + secret"))
    def issued_token_col(self, obj):
        if not obj.issued_token:
            return "—"
        return gettext("%(token)s, expires %(when)s") % {
            "token": mask_secret(obj.issued_token),
            "when": formats.date_format(timezone.localtime(obj.issued_token_expires_at), "SHORT_DATETIME_FORMAT")}
