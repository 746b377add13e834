from django import forms
from django.contrib import admin, messages

from .clients import check_connection
from .models import Connection
from .secrets import mask_secret


class ConnectionForm(forms.ModelForm):
    """Secrets are write-only: the form never sends them back to the browser; leaving the box empty
    keeps the stored value."""

    base_url = forms.URLField(assume_scheme="https", max_length=300)
    access_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    secret_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = Connection
        fields = (
            "system", "base_url", "api_version", "app_id", "business_id", "access_token", "secret_key",
            "requests_per_window", "window_seconds", "is_sandbox",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in Connection.SECRET_FIELDS:
            current = getattr(self.instance, name, "")
            hint = f"Stored: {mask_secret(current)}. Leave empty to keep it." if current else "Not set."
            self.fields[name].help_text = hint

    def clean(self):
        data = super().clean()
        for name in Connection.SECRET_FIELDS:
            if not data.get(name) and self.instance.pk:
                data[name] = getattr(self.instance, name)
        return data


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("system", "base_url", "api_version", "token_col", "is_sandbox", "updated_at")
    actions = ["test_connection"]

    # Staff who may change a connection may test it (it calls the upstream with the stored secrets).
    @admin.action(description="Test connection (one authenticated call; changes nothing)", permissions=["change"])
    def test_connection(self, request, queryset):
        for conn in queryset:
            ok, text = check_connection(conn)
            self.message_user(request, text, messages.SUCCESS if ok else messages.ERROR)

    @admin.display(description="Access token")
    def token_col(self, obj):
        return obj.masked_token or "—"
