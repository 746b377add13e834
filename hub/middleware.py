"""The language of each request: the one the user picked (the header's switch, Django's ``set_language`` view,
a cookie), else the shop's default (settings.LANGUAGE_CODE, Vietnamese). Unlike Django's LocaleMiddleware the
browser's Accept-Language is not asked: staff on an English-language browser still get the shop's language
until they pick English themselves."""

from django.conf import settings
from django.middleware.locale import LocaleMiddleware as DjangoLocaleMiddleware
from django.utils import translation
from django.utils.translation import trans_real


def language_of(request) -> str:
    chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
    if chosen:
        try:
            return trans_real.get_supported_language_variant(chosen)
        except LookupError:
            pass
    try:
        return trans_real.get_supported_language_variant(settings.LANGUAGE_CODE)
    except LookupError:
        return settings.LANGUAGE_CODE


class LocaleMiddleware(DjangoLocaleMiddleware):
    def process_request(self, request):
        language = language_of(request)
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
