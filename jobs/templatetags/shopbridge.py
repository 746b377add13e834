"""``{% load shopbridge %}``: ``{{ amount|vnd }}`` shows a VND amount grouped the active language's way."""

from django import template

from jobs.formatting import vnd as vnd_text

register = template.Library()


@register.filter(is_safe=True)
def vnd(amount):
    return vnd_text(amount)
