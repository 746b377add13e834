from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from products.views_webhooks import nhanh_webhook

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("jobs.urls")),
    path("webhooks/nhanh/", nhanh_webhook, name="nhanh-webhook"),
]
