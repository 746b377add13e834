"""Figures as staff read them, in the active language: VND amounts (one helper for every page that shows one)."""

from decimal import Decimal, InvalidOperation

from django.utils import formats

# A no-break space keeps the amount and its sign on one line in narrow admin columns.
VND_SIGN = "\u00a0₫"


def vnd(amount) -> str:
    """``1234567`` → ``1.234.567 ₫`` in Vietnamese (``1,234,567 ₫`` in English): whole dong, grouped the way the
    active language groups thousands. Empty for None; anything that is not a number is returned as given."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount)).quantize(Decimal(1))
    except (InvalidOperation, ValueError):
        return str(amount)
    return formats.number_format(value, decimal_pos=0, force_grouping=True) + VND_SIGN
