"""``Identity``: immutable, token-free, and scope-aware."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from starlette.testclient import TestClient
from support.private import expand_scopes, missing_scopes

from lwa_middleware import Identity, LWAMiddleware
from lwa_middleware.testing import LWAEmulator

USER = "amzn1.account.AFUSER000000000000000000001"
CLIENT = "amzn1.application-oa2-client.ours"


def make(**overrides: object) -> Identity:
    fields: dict[str, object] = {
        "user_id": USER,
        "email": "ada@example.com",
        "name": "Ada",
        "postal_code": "SW1A 1AA",
        "scopes": frozenset({"profile", "postal_code"}),
        "client_id": CLIENT,
        "expires_at": 1_700_000_000.0,
    }
    fields.update(overrides)
    return Identity(**fields)  # type: ignore[arg-type]


def test_fields_per_the_contract() -> None:
    identity = make()
    assert identity.user_id == USER
    assert identity.email == "ada@example.com"
    assert identity.name == "Ada"
    assert identity.postal_code == "SW1A 1AA"
    assert identity.scopes == frozenset({"profile", "postal_code"})
    assert isinstance(identity.scopes, frozenset)
    assert identity.client_id == CLIENT
    assert identity.expires_at == 1_700_000_000.0


@pytest.mark.parametrize(
    "field", ["user_id", "email", "name", "postal_code", "scopes", "client_id", "expires_at"]
)
def test_identity_is_immutable(field: str) -> None:
    identity = make()
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        setattr(identity, field, "changed")
    assert getattr(identity, field) != "changed"


def test_no_new_attributes_and_no_delete() -> None:
    identity = make()
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        identity.token = "x"  # type: ignore[attr-defined]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        del identity.user_id  # type: ignore[misc]


def test_scopes_cannot_be_mutated_in_place() -> None:
    with pytest.raises(AttributeError):
        make().scopes.add("admin")  # type: ignore[attr-defined]


def test_equality_hash_copy_pickle() -> None:
    a, b = make(), make()
    assert a == b
    assert hash(a) == hash(b)
    assert a != make(user_id="amzn1.account.OTHER")
    assert copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_minimal_identity_defaults() -> None:
    identity = Identity(user_id=USER, client_id=CLIENT, expires_at=1.0)
    assert identity.email is None
    assert identity.name is None
    assert identity.postal_code is None
    assert identity.scopes == frozenset()


def test_user_protocol_for_starlette() -> None:
    assert make().is_authenticated is True
    assert make().display_name == "Ada"
    assert make(name=None).display_name == "ada@example.com"
    assert make(name=None, email=None).display_name == USER


def test_has_scopes_with_implication() -> None:
    identity = make(scopes=frozenset({"profile"}))
    assert identity.has_scopes()
    assert identity.has_scopes("profile")
    assert identity.has_scopes("profile:user_id")
    assert identity.has_scopes("profile", "profile:user_id")
    assert not identity.has_scopes("postal_code")
    assert not make(scopes=frozenset({"profile:user_id"})).has_scopes("profile")


def test_expand_and_missing_scopes() -> None:
    assert expand_scopes(["profile"]) == {"profile", "profile:user_id"}
    assert expand_scopes({"postal_code"}) == {"postal_code"}
    assert expand_scopes([]) == frozenset()
    granted = expand_scopes({"profile"})
    assert missing_scopes(granted, frozenset({"profile:user_id", "postal_code"})) == {"postal_code"}


def test_to_dict_is_json_ready_with_sorted_scopes() -> None:
    data = make(scopes=frozenset({"profile", "postal_code", "profile:user_id"})).to_dict()
    assert data["scopes"] == ["postal_code", "profile", "profile:user_id"]
    assert data["user_id"] == USER
    assert data["client_id"] == CLIENT
    assert set(data) >= {
        "user_id",
        "email",
        "name",
        "postal_code",
        "scopes",
        "client_id",
        "expires_at",
    }


def test_repr_and_str_of_a_resolved_identity_hold_no_token(lwa_emulator: LWAEmulator) -> None:
    token = lwa_emulator.issue_token(scopes=["profile", "postal_code"], name="Ada")
    seen: list[Identity] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["lwa.identity"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = LWAMiddleware(app, client_id=lwa_emulator.client_id, api_base_url=lwa_emulator.base_url)
    # No ``with``: the bare app has no lifespan handler.
    client = TestClient(mw)
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    (identity,) = seen
    assert identity.name == "Ada"
    for text in (repr(identity), str(identity), repr(identity.to_dict())):
        assert token not in text
        assert token[-40:] not in text
    assert not any(token[-40:] in str(v) for v in identity.to_dict().values())
