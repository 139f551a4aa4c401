"""Flask's ``current_identity(required=True)``: typed ``Identity`` for
``mypy --strict`` user code on required routes, and the middleware's 401 when
there is none (issue 22, smaller items)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from flask import Flask

from lwa_middleware.integrations.flask import LWA, current_identity
from lwa_middleware.testing import LWAEmulator

REPO = Path(__file__).resolve().parents[2]

USER_CODE = textwrap.dedent(
    """
    from flask import Flask
    from lwa_middleware.integrations.flask import LWA, current_identity

    app = Flask(__name__)
    lwa = LWA(app, client_id="amzn1.application-oa2-client.0123")

    @app.get("/me")
    @lwa.required()
    def me() -> dict[str, str]:
        return {"user_id": current_identity(required=True).user_id}

    def maybe() -> str | None:
        identity = current_identity()
        return identity.user_id if identity is not None else None
    """
)


def test_user_code_on_required_routes_passes_mypy_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mypy_api = pytest.importorskip("mypy.api")
    source = tmp_path / "user_app.py"
    source.write_text(USER_CODE)
    monkeypatch.setenv("MYPYPATH", str(REPO))  # this checkout, before any installed copy
    out, err, status = mypy_api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-incremental", str(source)]
    )
    assert status == 0, out + err


def test_required_identity_answers_401_when_anonymous(lwa_emulator: LWAEmulator) -> None:
    app = Flask(__name__)
    LWA(app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url,
        default="optional")

    @app.get("/me")
    def me() -> dict[str, str]:
        return {"user_id": current_identity(required=True).user_id}

    client = app.test_client()
    anonymous = client.get("/me")
    assert anonymous.status_code == 401
    assert anonymous.json == {"error": "missing_token",
                              "error_description": "An LWA access token is required."}
    assert "WWW-Authenticate" in anonymous.headers
    token = lwa_emulator.issue_token(scopes=["profile"])
    signed = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert signed.status_code == 200
    assert signed.json["user_id"].startswith("amzn1.account.")
    with pytest.raises(RuntimeError, match="outside a request"):
        current_identity(required=True)
