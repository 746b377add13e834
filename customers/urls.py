from django.urls import path

from . import views

app_name = "customers"
urlpatterns = [path("pulls/customers/", views.start_pull, name="start-pull")]
