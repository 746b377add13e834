"""``{% load shopbridge %}``: ``{{ amount|vnd }}`` shows a VND amount grouped the active language's way."""

from django import template

from jobs.formatting import vnd as vnd_text

register = template.Library()


@register.filter(is_safe=True)
def vnd(amount):
    return vnd_text(amount)


@register.simple_tag
def other_languages():
    """The languages to switch to, each named in its own words ("English" on a Vietnamese page, "Tiếng Việt" on
    an English one), as settings.LANGUAGES spells them."""
    from django.conf import settings
    from django.utils.translation import get_language, get_supported_language_variant

    current = get_supported_language_variant(get_language())
    return [(code, name) for code, name in settings.LANGUAGES if code != current]
