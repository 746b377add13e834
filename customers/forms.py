from django import forms

from .models import CustomerType


class NhanhPullForm(forms.Form):
    MODES = [
        ("limit", "Pull 5000: the next 5,000 customers, wait for the result"),
        ("new", "New / updated since the last pull (first time: last 24 h), wait for the result"),
        ("all", "All customers, in the background"),
        ("filtered", "With filters, in the background"),
    ]
    mode = forms.ChoiceField(choices=MODES, widget=forms.RadioSelect, initial="new")
    customer_type = forms.TypedChoiceField(
        choices=[("", "any")] + list(CustomerType.choices), required=False, coerce=int, empty_value=None,
        label="Customer type",
        help_text="Filters apply to “With filters” only; each set of filters is a pull of its own.",
    )
    last_bought_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    last_bought_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    force_restart = forms.BooleanField(
        required=False, help_text="Stop a running pull with the same settings and start from the beginning."
    )

    def filters(self) -> dict:
        d = self.cleaned_data
        return {"type": d.get("customer_type"), "lastBoughtDateFrom": d.get("last_bought_from"),
                "lastBoughtDateTo": d.get("last_bought_to")}


class ShopifyPullForm(forms.Form):
    MODES = [("all", "All customers, in the background"),
             ("query", "Customers matching a Shopify search query, in the background")]
    mode = forms.ChoiceField(choices=MODES, widget=forms.RadioSelect, initial="all")
    query = forms.CharField(
        required=False, max_length=500, widget=forms.TextInput(attrs={"size": 60}),
        help_text="Shopify search syntax, e.g. <code>state:ENABLED</code>, "
                  "<code>updated_at:&gt;='2026-11-01T00:00:00Z'</code>, <code>tag:vip</code>.",
    )
    force_restart = forms.BooleanField(
        required=False, help_text="Stop a running pull with the same query and start from the beginning."
    )
