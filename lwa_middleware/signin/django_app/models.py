"""The link of an Amazon account to a Django user."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AmazonAccount(models.Model):  # type: ignore[misc]
    """One Amazon customer (``amazon_user_id``, LWA's ``user_id``) signs in as ``user``.

    Both sides are unique: a customer has one Django user, and a user is at
    most one customer's, so two customers never share an account. Created
    only when the sign-in created the user itself (or by the app, explicitly,
    e.g. after the customer typed the local account's password).
    """

    # LWA's user_id ("amzn1.account.…"); not named user_id, which is the FK's column.
    amazon_user_id = models.CharField(max_length=255, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="lwa_amazon_account",
    )
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Amazon account"

    def __str__(self) -> str:
        return f"{self.amazon_user_id} → user {self.user_id}"
