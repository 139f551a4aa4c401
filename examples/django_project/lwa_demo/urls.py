from __future__ import annotations

from django.urls import path

from lwa_demo import views

urlpatterns = [
    path("health", views.health),
    path("", views.home),
    path("me", views.me),
    path("shipping", views.shipping),
]
