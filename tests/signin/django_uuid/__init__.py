"""A Django project whose ``AUTH_USER_MODEL`` has a UUID primary key.

Django fixes the user model once per process, so its checks
(``uuid_checks.py``) run in a pytest subprocess of their own, started by
``tests/signin/test_signin_django.py``.
"""
