"""A minimal Django project protected by LWA (settings, urls, views, wsgi)."""
