"""Flask with the LWA extension, configured from ``app.config``.

Run it: ``python examples/flask_app.py``. Without ``LWA_API_BASE_URL`` it
starts the bundled LWA emulator and prints a token.

- ``GET /health``: public.
- ``GET /``: optional; ``g.lwa_identity`` is ``None`` when anonymous.
- ``GET /me``: needs a token (the route table's default).
- ``GET /shipping``: ``@lwa.required("postal_code")``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g

from lwa_middleware.integrations.flask import LWA, current_identity

lwa = LWA()


def create_app(api_base_url: str | None = None, client_id: str | None = None) -> Flask:
    """The example app; ``None`` arguments fall back to ``LWA_API_BASE_URL``/``LWA_CLIENT_ID``."""
    app = Flask(__name__)
    app.config.update(
        LWA_ROUTES={"/health": "public", "/": "optional"},
        LWA_DEFAULT="required",
        LWA_CACHE_TTL=300,
    )
    if api_base_url is not None:
        app.config["LWA_API_BASE_URL"] = api_base_url
    if client_id is not None:
        app.config["LWA_CLIENT_ID"] = client_id
    lwa.init_app(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/")
    def home() -> dict[str, str]:
        identity = g.lwa_identity
        return {"hello": identity.display_name if identity else "anonymous"}

    @app.get("/me")
    def me() -> dict[str, Any]:
        identity = current_identity()
        assert identity is not None  # the route is "required"
        return identity.to_dict()

    @app.get("/shipping")
    @lwa.required("postal_code")
    def shipping() -> dict[str, Any]:
        identity = current_identity()
        assert identity is not None
        return {"user_id": identity.user_id, "postal_code": identity.postal_code}

    return app


def main() -> None:
    from _demo import HOST, announce, lwa_upstream, port

    api_base_url, client_id, emulator = lwa_upstream()
    app = create_app(api_base_url, client_id)
    announce(emulator, f"http://{HOST}:{port()}/shipping")
    # The dev server's access log prints request lines, ?access_token=... included.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host=HOST, port=port(), threaded=True)


if __name__ == "__main__":
    main()
