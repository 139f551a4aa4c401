"""The custom user model: Django's user, keyed by a UUID."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):  # type: ignore[misc]
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
