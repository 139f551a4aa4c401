"""Route policies (``lwa_middleware.routes``): patterns, precedence, parsing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.leaks import grown_by
from support.private import Access, Policy, RouteTable

from lwa_middleware import ConfigurationError, revalidate

PUBLIC = Policy(Access.PUBLIC)
OPTIONAL = Policy(Access.OPTIONAL)
REQUIRED = Policy(Access.REQUIRED)


def scopes(*names: str) -> Policy:
    return Policy(Access.REQUIRED, frozenset(names))


# -- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("public", PUBLIC),
        ("optional", OPTIONAL),
        ("required", REQUIRED),
        ("PUBLIC", PUBLIC),
        (["postal_code"], scopes("postal_code")),
        (("profile", "postal_code"), scopes("profile", "postal_code")),
        ({"profile:user_id"}, scopes("profile:user_id")),
        (frozenset(), REQUIRED),
    ],
)
def test_policy_parse(spec: object, expected: Policy) -> None:
    assert Policy.parse(spec) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec", ["postal_code", "profile", "private", "", "none", 42, None, [""], ["two words"], [3]]
)
def test_policy_parse_errors(spec: object) -> None:
    with pytest.raises(ConfigurationError):
        Policy.parse(spec)  # type: ignore[arg-type]


def test_bare_scope_string_error_suggests_a_list() -> None:
    with pytest.raises(ConfigurationError, match=r"\['postal_code'\]"):
        RouteTable({"/zip": "postal_code"})


@pytest.mark.parametrize(
    "routes",
    [
        {"me": "public"},
        {"": "public"},
        {"/a*": "public"},
        {"/a/**/b": "public"},
        {"/a/b**": "public"},
        {"/*x/y": "public"},
    ],
)
def test_bad_patterns_are_configuration_errors(routes: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        RouteTable(routes)


def test_bad_default_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        RouteTable({}, default="postal_code")


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        RouteTable({"/x": "nope"})


# -- matching ------------------------------------------------------------------


def test_default_policy() -> None:
    assert RouteTable({}).lookup("/anything") == REQUIRED
    assert RouteTable({"/x": "public"}, default="optional").lookup("/y") == OPTIONAL
    assert RouteTable(None, default="public").lookup("/") == PUBLIC
    assert RouteTable({}, default=["postal_code"]).lookup("/a/b") == scopes("postal_code")


def test_exact_beats_wildcard() -> None:
    table = RouteTable(
        {"/users/*": "public", "/users/me": "required", "/**": "optional", "/": "public"}
    )
    assert table.lookup("/users/me") == REQUIRED
    assert table.lookup("/users/you") == PUBLIC
    assert table.lookup("/users/you/x") == OPTIONAL
    assert table.lookup("/users") == OPTIONAL
    assert table.lookup("/") == PUBLIC
    # An exact pattern beats even a longer wildcard.
    longer = RouteTable({"/a/bb/**": "public", "/a/bb": "required"})
    assert longer.lookup("/a/bb") == REQUIRED
    assert longer.lookup("/a/bb/c") == PUBLIC


def test_longest_wildcard_wins() -> None:
    table = RouteTable(
        {
            "/**": "public",
            "/api/**": "optional",
            "/api/admin/**": ["postal_code"],
            "/api/*/orders": ["profile"],
        }
    )
    assert table.lookup("/") == PUBLIC
    assert table.lookup("/home") == PUBLIC
    assert table.lookup("/api") == OPTIONAL
    assert table.lookup("/api/x") == OPTIONAL
    assert table.lookup("/api/admin") == scopes("postal_code")
    assert table.lookup("/api/admin/users/1") == scopes("postal_code")
    assert table.lookup("/api/42/orders") == scopes("profile")
    # "/api/admin/**" (13 chars) is longer than "/api/*/orders" (13 chars) … tie on
    # length: both match "/api/admin/orders"; either is a defensible answer,
    # but it must be one of them.
    assert table.lookup("/api/admin/orders") in (scopes("postal_code"), scopes("profile"))


def test_star_is_exactly_one_non_empty_segment() -> None:
    table = RouteTable({"/users/*/orders": "public"})
    assert table.lookup("/users/42/orders") == PUBLIC
    assert table.lookup("/users/a.b-c/orders") == PUBLIC
    assert table.lookup("/users/orders") == REQUIRED
    assert table.lookup("/users/1/2/orders") == REQUIRED
    assert table.lookup("/users/1/orders/x") == REQUIRED
    assert table.lookup("/users/1/ordersx") == REQUIRED


def test_double_star_prefix_semantics() -> None:
    table = RouteTable({"/static/**": "public"})
    for path in ("/static", "/static/", "/static/a", "/static/a/b", "/static/a/b/"):
        assert table.lookup(path) == PUBLIC, path
    for path in ("/staticx", "/static.css", "/stati", "/", "/x/static"):
        assert table.lookup(path) == REQUIRED, path


def test_literal_segments_are_not_regexes() -> None:
    table = RouteTable({"/a.b/*": "public", "/x+/**": "public"})
    assert table.lookup("/a.b/1") == PUBLIC
    assert table.lookup("/aXb/1") == REQUIRED
    assert table.lookup("/x+/y") == PUBLIC
    assert table.lookup("/xx/y") == REQUIRED


def test_double_slashes_and_trailing_slash_fold() -> None:
    table = RouteTable({"/me": "public", "/users/*/orders": "optional", "/a/": "public"})
    assert table.lookup("/me/") == PUBLIC
    assert table.lookup("//me") == PUBLIC
    assert table.lookup("/me//") == PUBLIC
    assert table.lookup("/users//7//orders/") == OPTIONAL
    assert table.lookup("/a") == PUBLIC
    assert table.lookup("") == REQUIRED


def test_dot_segments_take_the_stricter_policy() -> None:
    table = RouteTable(
        {"/public/**": "public", "/admin/**": "required", "/zip": ["postal_code"]},
        default="optional",
    )
    assert table.lookup("/public/../admin") == REQUIRED
    assert table.lookup("/public/./../admin/") == REQUIRED
    assert table.lookup("/public/../zip") == scopes("postal_code")
    assert table.lookup("/public/..") == OPTIONAL
    assert table.lookup("/public/./x") == PUBLIC
    # The raw form may be the strict one too.
    assert table.lookup("/admin/../public/x") == REQUIRED


def test_stricter_merges_scopes() -> None:
    assert scopes("a").stricter(scopes("b")) == scopes("a", "b")
    assert PUBLIC.stricter(REQUIRED) == REQUIRED
    assert OPTIONAL.stricter(PUBLIC) == OPTIONAL


@pytest.mark.parametrize(
    ("policy", "needs"),
    [
        (REQUIRED, True),
        (OPTIONAL, True),
        (scopes("profile:user_id"), False),
        (scopes("profile"), True),
        (scopes("postal_code"), True),
        (scopes("profile:user_id", "postal_code"), True),
    ],
)
def test_needs_profile(policy: Policy, needs: bool) -> None:
    assert policy.needs_profile is needs


def test_lookup_is_stable_across_the_memo() -> None:
    table = RouteTable({"/a/*": "public"}, cache_size=2)
    for _ in range(3):
        for path in ("/a/1", "/a/2", "/a/3", "/b"):
            expected = PUBLIC if path.startswith("/a/") else REQUIRED
            assert table.lookup(path) == expected


def test_revalidate_policies() -> None:
    plain = revalidate()
    assert plain.access is Access.REQUIRED
    assert plain.revalidate is True
    assert plain.scopes == frozenset()
    zipped = revalidate(["postal_code"])
    assert zipped.scopes == {"postal_code"}
    assert zipped.revalidate is True
    assert REQUIRED.revalidate is False
    for spec in ("public", "optional", "postal_code"):
        with pytest.raises(ConfigurationError):
            revalidate(spec)


def test_revalidate_survives_lookup_and_dot_segments() -> None:
    table = RouteTable({"/pay/**": revalidate(), "/public/**": "public"})
    assert table.lookup("/pay/now").revalidate is True
    assert table.lookup("/public/../pay/now").revalidate is True
    assert table.lookup("/pay/./x").revalidate is True
    assert table.lookup("/other").revalidate is False
    assert REQUIRED.stricter(revalidate()).revalidate is True
    assert PUBLIC.stricter(revalidate(["profile"])) == revalidate(["profile"])


# -- brute-force reference -----------------------------------------------------

_SEGMENTS = ["a", "b", "c", "x.y"]


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _matches(pattern: str, path: str) -> bool:
    prefix_only = pattern.endswith("/**")
    pat = _segments(pattern[:-3] if prefix_only else pattern)
    got = _segments(path)
    if prefix_only:
        if len(got) < len(pat):
            return False
        got = got[: len(pat)]
    elif len(got) != len(pat):
        return False
    return all(p == "*" or p == g for p, g in zip(pat, got, strict=True))


def _reference(routes: dict[str, Policy], path: str, default: Policy) -> set[Policy]:
    """Every policy a correct table may answer (ties among equally long wildcards)."""
    folded = "/" + "/".join(_segments(path))
    for pattern, policy in routes.items():
        if "*" not in pattern and "/" + "/".join(_segments(pattern)) == folded:
            return {policy}
    wild = [(len(p), pol) for p, pol in routes.items() if "*" in p and _matches(p, path)]
    if not wild:
        return {default}
    longest = max(length for length, _ in wild)
    return {pol for length, pol in wild if length == longest}


_pattern = st.builds(
    lambda segs, tail: "/" + "/".join(segs) + ("/**" if tail else "") if segs or tail else "/",
    st.lists(st.sampled_from([*_SEGMENTS, "*"]), max_size=4),
    st.booleans(),
).map(lambda p: "/**" if p == "//**" else p)

_path = st.builds(
    lambda segs, lead, trail: ("//" if lead else "/") + "/".join(segs) + ("/" if trail else ""),
    st.lists(st.sampled_from([*_SEGMENTS, "d"]), max_size=5),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(_pattern, max_size=7, unique=True), paths=st.lists(_path, max_size=10))
def test_lookup_equals_brute_force_reference(patterns: list[str], paths: list[str]) -> None:
    routes = {p: scopes(f"s{i}") for i, p in enumerate(patterns)}
    default = scopes("default")
    table = RouteTable(routes, default=default)
    for path in paths:
        got = table.lookup(path)
        allowed = _reference(routes, path, default)
        assert got in allowed, (routes, path, got, allowed)


def test_pattern_strategy_sanity() -> None:
    # The reference itself must be able to tell patterns apart.
    assert _matches("/a/*", "/a/b")
    assert not _matches("/a/*", "/a")
    assert _matches("/a/**", "/a")
    assert _matches("/**", "/")
    assert not _matches("/a/**", "/ab")
    assert re.fullmatch(r"/[^/]*", "/a")


# -- bounded memory under hostile paths ----------------------------------------


def test_long_hostile_paths_are_not_pinned_by_the_memo() -> None:
    """2000 distinct 60 KiB paths must not grow the process by more than a few MiB."""
    table = RouteTable({"/static/**": "public", "/users/*/orders": "required"})
    paths = (f"/users/{i:05d}/" + "x" * 60 * 1024 for i in range(2000))

    def lookups() -> None:
        for path in paths:
            assert table.lookup(path) is table.default
            assert table.lookup_mounted(path, "/api") is table.default

    assert grown_by(lookups) < 4 * 1024 * 1024


def test_long_paths_get_their_policy_without_the_memo() -> None:
    table = RouteTable({"/static/**": "public", "/users/*/orders": ["profile"]})
    long_tail = "x" * 4096
    assert table.lookup("/static/" + long_tail) == PUBLIC
    assert table.lookup("/users/" + long_tail + "/orders") == scopes("profile")
    assert table.lookup("/static/" + long_tail + "/../../admin") == REQUIRED


# -- framework placeholders and unprovable scopes ------------------------------


@pytest.mark.parametrize(
    ("pattern", "fixed"),
    [
        ("/users/{id}", "/users/*"),
        ("/users/{user_id}/orders", "/users/*/orders"),
        ("/users/<int:id>", "/users/*"),
        ("/files/<path:rest>", "/files/*"),
        ("/users/:id", "/users/*"),
        ("/users/:id/orders/:order", "/users/*/orders/*"),
    ],
)
def test_framework_placeholders_are_refused_with_the_pattern_to_write(
    pattern: str, fixed: str
) -> None:
    with pytest.raises(ConfigurationError, match="path parameter") as caught:
        RouteTable({pattern: "public"})
    assert repr(fixed) in str(caught.value)


@pytest.mark.parametrize(
    ("scope", "hint"),
    [("postalcode", "postal_code"), ("Profile", "profile"), ("profile:userid", "profile:user_id")],
)
def test_a_scope_lwa_cannot_prove_is_refused_with_a_suggestion(scope: str, hint: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot prove") as caught:
        RouteTable({"/zip": [scope]})
    assert f"did you mean {hint!r}" in str(caught.value)
    with pytest.raises(ConfigurationError, match="cannot prove"):
        revalidate([scope])


def test_an_unknown_scope_without_a_near_match_lists_the_provable_ones() -> None:
    with pytest.raises(ConfigurationError, match="'postal_code', 'profile', 'profile:user_id'"):
        RouteTable({"/admin": ["admin"]})


def test_the_route_memo_is_bounded_and_skips_long_paths() -> None:
    table = RouteTable({"/users/*": "public"}, cache_size=3)
    for i in range(10):
        assert table.lookup(f"/users/{i}") == PUBLIC
        assert table.memo_get(f"/users/{i}") == PUBLIC  # just memoised
    assert table.memo_get("/users/0") is None  # started over when full
    long = "/users/" + "x" * 600
    assert table.lookup(long) == PUBLIC
    assert table.memo_get(long) is None


@pytest.mark.parametrize(
    ("spec", "says", "never"),
    [
        ("requried", "did you mean 'required'?", "['requried']"),
        ("Optinal", "did you mean 'optional'?", "['Optinal']"),
        ("postal_code", "a scope goes in a list: ['postal_code']", "did you mean"),
        ("zzz", "a list of scopes such as ['profile']", "['zzz']"),
    ],
)
def test_an_unknown_policy_says_what_was_probably_meant(spec: str, says: str, never: str) -> None:
    # A new user's typo used to be answered with "a list of scopes such as
    # ['requried']", a scope LWA cannot prove (refused in turn).
    with pytest.raises(ConfigurationError) as refused:
        Policy.parse(spec, "default")
    assert says in str(refused.value)
    assert never not in str(refused.value)
