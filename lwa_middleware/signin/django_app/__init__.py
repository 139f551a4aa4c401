"""The Django app of LWA sign-in's account links (``INSTALLED_APPS``).

Amazon's "Integrate with Your Existing Account System" page says to record
the mapping from the Amazon account identifier (``user_id``) to the local
account in a new field or table, and to look users up by it.
:class:`~.models.AmazonAccount` is that table:
:class:`lwa_middleware.signin.django.LWABackend` finds a customer's Django
user through it only, never by a username that happens to equal the
``user_id`` (which anyone able to register could have chosen).

::

    INSTALLED_APPS = [..., "django.contrib.auth", "lwa_middleware.signin.django_app"]
    # then: python manage.py migrate lwa_signin
"""
