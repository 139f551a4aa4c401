"""App config of the account links: label ``lwa_signin``."""

from __future__ import annotations

from django.apps import AppConfig


class LWASignInConfig(AppConfig):  # type: ignore[misc]
    """The table of Amazon ``user_id`` → Django user links."""

    name = "lwa_middleware.signin.django_app"
    label = "lwa_signin"
    verbose_name = "Login with Amazon accounts"
    default_auto_field = "django.db.models.BigAutoField"
