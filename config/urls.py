from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from hub.views import overview

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/overview/", overview, name="hub-overview"),
    path("api/", include("jobs.urls")),
]
