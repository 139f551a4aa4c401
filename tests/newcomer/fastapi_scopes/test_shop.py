from shop import create_app
from starlette.testclient import TestClient

from lwa_middleware.testing import Fault


def client_for(lwa_emulator):
    app = create_app(client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url)
    return TestClient(app)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_anyone_may_browse(lwa_emulator):
    with client_for(lwa_emulator) as client:
        assert client.get("/products").json()["greeting"] == "Hello"
        token = lwa_emulator.issue_token(scopes=["profile"], name="Ada Lovelace")
        assert client.get("/products", headers=bearer(token)).json()["greeting"] == (
            "Hello Ada Lovelace")


def test_me_needs_a_token(lwa_emulator):
    with client_for(lwa_emulator) as client:
        answer = client.get("/me")
        assert answer.status_code == 401
        assert answer.json()["error"] == "missing_token"
        assert answer.headers["www-authenticate"] == 'Bearer realm="lwa"'
        token = lwa_emulator.issue_token(scopes=["profile"], name="Ada Lovelace")
        assert client.get("/me", headers=bearer(token)).json()["name"] == "Ada Lovelace"


def test_a_quote_needs_postal_code(lwa_emulator):
    with client_for(lwa_emulator) as client:
        profile_only = lwa_emulator.issue_token(scopes=["profile"])
        refused = client.get("/shipping/quote", headers=bearer(profile_only))
        assert refused.status_code == 403
        assert refused.json()["error"] == "insufficient_scope"
        assert 'scope="postal_code"' in refused.headers["www-authenticate"]
        both = lwa_emulator.issue_token(scopes=["profile", "postal_code"], postal_code="SW1A 1AA")
        assert client.get("/shipping/quote", headers=bearer(both)).json() == {
            "postal_code": "SW1A 1AA", "price": 4.5}


def test_a_token_for_another_app_is_refused(lwa_emulator):
    with client_for(lwa_emulator) as client:
        token = lwa_emulator.issue_token(aud="amzn1.application-oa2-client.someone-else")
        answer = client.get("/me", headers=bearer(token))
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_token"


def test_lwa_down_is_a_503(lwa_emulator):
    with client_for(lwa_emulator) as client:
        lwa_emulator.inject(Fault.DOWN)
        answer = client.get("/me", headers=bearer(lwa_emulator.issue_token()))
        assert answer.status_code == 503
        assert "retry-after" in answer.headers


def test_the_openapi_page_shows_the_lock(lwa_emulator):
    with client_for(lwa_emulator) as client:
        spec = client.get("/openapi.json").json()
        assert "LWA" in spec["components"]["securitySchemes"]
