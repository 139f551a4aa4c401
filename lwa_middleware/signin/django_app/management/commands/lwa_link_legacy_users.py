"""``manage.py lwa_link_legacy_users [--apply]``: link the users the old backend made.

Before the links table, :class:`~lwa_middleware.signin.django.LWABackend`
found a customer's user by a username equal to the LWA ``user_id``, and
created it with an unusable password. Such a user is now found by nobody
until linked: this command links each one whose password is still unusable.
A user so named *with* a password may have been registered by anyone (the
takeover the links table prevents), so it is listed and left alone: link it
with ``link_amazon_account`` only once its owner proved they are the customer.
Without ``--apply`` it only lists what it would do.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from ....django import link_amazon_account

# Amazon's "Integrate with Your Existing Account System": user_id is amzn1.account.VALUE.
_USER_ID_PREFIX = "amzn1.account."


class Command(BaseCommand):  # type: ignore[misc]
    help = "Link the users named after an LWA user_id that have no password (--apply to do it)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--apply", action="store_true", help="link them (else only list)")

    def handle(self, *args: Any, apply: bool = False, **options: Any) -> None:
        model = get_user_model()
        named = {f"{model.USERNAME_FIELD}__startswith": _USER_ID_PREFIX}
        users = model._default_manager.filter(lwa_amazon_account__isnull=True, **named)
        for user in users.order_by("pk"):
            self.stdout.write(self._one(user, apply))

    def _one(self, user: Any, apply: bool) -> str:
        name = user.get_username()
        if user.has_usable_password():
            return f"skipped {name} (user {user.pk}): it has a password; link it by hand if at all"
        if apps.get_model("lwa_signin", "AmazonAccount").objects.filter(amazon_user_id=name):
            return f"skipped {name} (user {user.pk}): that customer is linked to another user"
        if not apply:
            return f"would link {name} to user {user.pk}"
        with transaction.atomic():
            link_amazon_account(user, name)
        return f"linked {name} to user {user.pk}"
