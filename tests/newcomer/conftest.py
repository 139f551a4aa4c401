"""Each directory here is a newcomer's project with its own ``pytest.ini`` and
tests, run in its own process by ``test_newcomer.py`` as its author would run
them; the suite does not collect them itself (two Django projects cannot share
one process)."""

collect_ignore = ["fastapi_scopes", "flask_signin", "django_drf"]
