from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

from hub.views import overview
from products.views_webhooks import nhanh_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # The header's language switch posts to set_language (i18n/setlang/), which keeps the choice in a cookie.
    path("i18n/", include("django.conf.urls.i18n")),
    # Strings of our scripts (the job dashboard's), in the request's language: gettext() in JavaScript.
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["jobs"]), name="javascript-catalog"),
    path("admin/", admin.site.urls),
    path("api/overview/", overview, name="hub-overview"),
    path("api/", include("jobs.urls")),
    path("webhooks/nhanh/", nhanh_webhook, name="nhanh-webhook"),
]
