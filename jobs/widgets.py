"""Form widgets shared by the admin pages of every app."""

from django import forms
from django.utils import formats

_PLACEHOLDER_PARTS = {"%d": "dd", "%m": "mm", "%Y": "yyyy", "%y": "yy"}


class LocalDateInput(forms.DateInput):
    """A text box for a date in the active language's first input format (dd/mm/yyyy in Vietnamese), with that
    format as its placeholder. The browser's own date picker (``type="date"``) would ask in the browser's locale
    instead (mm/dd/yyyy on an American-English browser). Every format of DATE_INPUT_FORMATS is accepted."""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        fmt = formats.get_format("DATE_INPUT_FORMATS")[0]
        for code, text in _PLACEHOLDER_PARTS.items():
            fmt = fmt.replace(code, text)
        context["widget"]["attrs"].setdefault("placeholder", fmt)
        context["widget"]["attrs"].setdefault("size", 12)
        return context
