import views
from django.conf import settings
from django.urls import path

from lwa_middleware.signin.django import signin_urls

urlpatterns = [
    *signin_urls(settings.SIGNIN),
    path("", views.home),
    path("api/me", views.me),
    path("api/shipping", views.shipping),
]
