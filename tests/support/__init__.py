"""Test support, one place for each thing the suite needs more than once.

``support.servers``
    serve an ASGI app (uvicorn, hypercorn asyncio/trio) or a WSGI app
    (waitress, Werkzeug threaded, wsgiref) on a pre-bound loopback socket.
``support.more_servers``
    granian, daphne, gunicorn and uWSGI as child processes serving
    ``support.server_apps``; cheroot in a thread; ``raw_status`` for raw requests.
``support.redis_servers``
    throwaway ``redis-server``, a black-hole port, uvicorn worker processes.
``support.callers``
    one calling convention over both middlewares: ``AsgiCaller``,
    ``WsgiCaller``, ``HttpCaller`` (a real server), ``Reply``; raw
    ``asgi_call``/``wsgi_call`` with no HTTP client in between.
``support.contract``
    the contract's error table as data (``CASES``) and its checker.
``support.leaks``
    the leak checker: ``Secrets`` (no token in logs, errors, reprs, caches),
    ``frames_holding`` (no token in frame locals), ``grown_by`` (memory).
``support.clock``
    ``FakeClock``, the suite's one fake clock, for every ``clock=`` option.
``support.fleet`` / ``support.plans``
    the Redis tier's fixtures and helpers; the shared cache's plan driver.
``support.tiers``
    the fast tier: sorts each test by what it uses (``pytest --fast``).

``tests/`` is on ``sys.path`` (pytest's ``pythonpath``), so any test module
imports these as ``from support.callers import AsgiCaller``.
"""
