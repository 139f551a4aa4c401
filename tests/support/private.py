"""The one place the test suite reads lwa-middleware's private engine.

Tests import public names from the public API, as users do. What they need
beyond it (units of the engine tested on their own, a transport to swap, a
cache to inspect) comes from here, grouped with the reason the public API does
not do. Resolved lazily (PEP 562), so that importing a name needs only its own
tier's extras. Made by the layout move script (issue 19): a test's import of
an engine module becomes ``from support.private import ...`` and lands here.
"""

from __future__ import annotations

import importlib
from operator import attrgetter
from typing import Any

# name -> "module:attribute"
WHERE: dict[str, str] = {
    # engine internals the tests observe
    "Transport": "lwa_middleware._engine._aio:Transport",
    # the conformance suite's model, checked against the emulator
    "INVALID_TOKEN": "lwa_middleware._engine._conformance:INVALID_TOKEN",
    "MODEL": "lwa_middleware._engine._conformance:MODEL",
    # the optional-tier guard, tested without its extras
    "EXTRAS": "lwa_middleware._engine._extras:EXTRAS",
    "MissingExtra": "lwa_middleware._engine._extras:MissingExtra",
    "needs_extra": "lwa_middleware._engine._extras:needs_extra",
    # engine internals the tests observe
    "COMPUTED": "lwa_middleware._engine._options:COMPUTED",
    "OptionError": "lwa_middleware._engine._options:OptionError",
    "with_tables": "lwa_middleware._engine._options:with_tables",
    # engine internals the tests observe
    "Aead": "lwa_middleware._engine._seal:Aead",
    "derive": "lwa_middleware._engine._seal:derive",
    "Deriver": "lwa_middleware._engine._seal:Deriver",
    # the circuit breaker, with an injected clock
    "CircuitBreaker": "lwa_middleware._engine.breaker:CircuitBreaker",
    "Throttle": "lwa_middleware._engine.breaker:Throttle",
    # the in-process cache and its key digest, tested as units
    "Entry": "lwa_middleware._engine.cache:Entry",
    "IdentityCache": "lwa_middleware._engine.cache:IdentityCache",
    "REVOKED": "lwa_middleware._engine.cache:REVOKED",
    "token_digest": "lwa_middleware._engine.cache:token_digest",
    # the CLI's main(), run in-process
    "main": "lwa_middleware._engine.cli:main",
    # the CLI's loopback-only rule for --host, tested on host names
    "cli_is_loopback": "lwa_middleware._engine.cli:_is_loopback",
    "cli_check_loopback": "lwa_middleware._engine.cli:_check_loopback",
    "cli_origin": "lwa_middleware._engine.cli:_origin",
    # Settings: unit tests build the resolved options without a middleware
    "OPTIONS": "lwa_middleware._engine.config:OPTIONS",
    "Options": "lwa_middleware._engine.config:Options",
    "REGIONS": "lwa_middleware._engine.config:REGIONS",
    "Settings": "lwa_middleware._engine.config:Settings",
    # the demo's apps and server helpers
    "HtmlRefusals": "lwa_middleware._engine.demo.server_side:HtmlRefusals",
    "bind_socket": "lwa_middleware._engine.demo.server:bind_socket",
    "build_demo_app": "lwa_middleware._engine.demo:build_demo_app",
    "build_server_side_demo_app": (
        "lwa_middleware._engine.demo.server_side:build_server_side_demo_app"
    ),
    "serve_in_thread": "lwa_middleware._engine.demo.server:serve_in_thread",
    "url_for": "lwa_middleware._engine.demo.server:url_for",
    # error classes not exported at the top level
    "BreakerOpen": "lwa_middleware._engine.errors:BreakerOpen",
    "Saturated": "lwa_middleware._engine.errors:Saturated",
    # the sans-IO resolution flow, driven step by step
    "Flow": "lwa_middleware._engine.flow:Flow",
    "Resolved": "lwa_middleware._engine.flow:Resolved",
    "UpstreamFailure": "lwa_middleware._engine.flow:UpstreamFailure",
    "UpstreamRequest": "lwa_middleware._engine.flow:UpstreamRequest",
    "UpstreamResponse": "lwa_middleware._engine.flow:UpstreamResponse",
    "resolution_flow": "lwa_middleware._engine.flow:resolution_flow",
    "seconds_field": "lwa_middleware._engine.flow:seconds_field",
    # the request gate, tested without a server
    "ANONYMOUS": "lwa_middleware._engine.gate:ANONYMOUS",
    "Gate": "lwa_middleware._engine.gate:Gate",
    "PASS": "lwa_middleware._engine.gate:PASS",
    "Resolve": "lwa_middleware._engine.gate:Resolve",
    # infer_scopes and friends: the scope inference rules of CONTRACT.md
    "expand_scopes": "lwa_middleware._engine.identity:expand_scopes",
    "infer_scopes": "lwa_middleware._engine.identity:infer_scopes",
    "missing_scopes": "lwa_middleware._engine.identity:missing_scopes",
    # engine internals the tests observe
    "OPTION_KEYS": "lwa_middleware.integrations._django_parts:OPTION_KEYS",
    "settings_from_django": "lwa_middleware.integrations._django_parts:settings_from_django",
    # the unprotected paths the integrations already warned about (once each): a test forgets
    # them to see its own warning
    "unprotected_warned": "lwa_middleware.integrations._common:_warned",
    # whole engine modules: tests swap or inspect one of their attributes
    "cache": "lwa_middleware._engine:cache",
    "cli": "lwa_middleware._engine:cli",
    "shared_cache": "lwa_middleware._engine:shared_cache",
    # the resolver, driven without an app in front
    "Resolver": "lwa_middleware._engine.resolver:Resolver",
    # the route table, tested without a middleware around it
    "Access": "lwa_middleware._engine.routes:Access",
    "PROVABLE_SCOPES": "lwa_middleware._engine.routes:PROVABLE_SCOPES",
    "Policy": "lwa_middleware._engine.routes:Policy",
    "RouteTable": "lwa_middleware._engine.routes:RouteTable",
    # the shared cache's drivers, codec and plans, tested against real Redis
    "AsyncSharedCache": "lwa_middleware._engine.shared_cache:AsyncSharedCache",
    "BACKOFF": "lwa_middleware._engine.shared_cache._health:BACKOFF",
    "BACKOFF_MAX": "lwa_middleware._engine.shared_cache._health:BACKOFF_MAX",
    "CHANNEL": "lwa_middleware._engine.shared_cache:CHANNEL",
    "CATCH_UP_PAGE": "lwa_middleware._engine.shared_cache._fleet:_BATCH",
    "MAX_MESSAGE": "lwa_middleware._engine.shared_cache._channel:MAX_MESSAGE",
    "CLUSTER_INIT_TIMEOUT": "lwa_middleware._engine.shared_cache._drivers:CLUSTER_INIT_TIMEOUT",
    "COLD_START": "lwa_middleware._engine.shared_cache._health:COLD_START",
    "Codec": "lwa_middleware._engine.shared_cache._codec:Codec",
    "DURABLE_TIMEOUT": "lwa_middleware._engine.shared_cache._health:DURABLE_TIMEOUT",
    "EPOCH_KEY": "lwa_middleware._engine.shared_cache._codec:EPOCH_KEY",
    "FAULTS": "lwa_middleware._engine.shared_cache._health:FAULTS",
    "FULL_MEANWHILE": "lwa_middleware._engine.shared_cache._health:FULL_MEANWHILE",
    "Fleet": "lwa_middleware._engine.shared_cache:Fleet",
    "LOG_INTERVAL": "lwa_middleware._engine.shared_cache._health:LOG_INTERVAL",
    "Limits": "lwa_middleware._engine.shared_cache._topology:Limits",
    "PROBE_WINDOW": "lwa_middleware._engine.shared_cache._health:PROBE_WINDOW",
    "READ_HIT": "lwa_middleware._engine.shared_cache._scripts:READ_HIT",
    "READ_LEASE_HELD": "lwa_middleware._engine.shared_cache._scripts:READ_LEASE_HELD",
    "READ_LEASE_TAKEN": "lwa_middleware._engine.shared_cache._scripts:READ_LEASE_TAKEN",
    "READ_MISS": "lwa_middleware._engine.shared_cache._scripts:READ_MISS",
    "READ_REJECTED": "lwa_middleware._engine.shared_cache._scripts:READ_REJECTED",
    "READ_REVOKED": "lwa_middleware._engine.shared_cache._scripts:READ_REVOKED",
    "SCRIPTS": "lwa_middleware._engine.shared_cache._scripts:SCRIPTS",
    "SECRET_KEY": "lwa_middleware._engine.shared_cache._codec:SECRET_KEY",
    "STREAM": "lwa_middleware._engine.shared_cache:STREAM",
    "SharedHit": "lwa_middleware._engine.shared_cache:SharedHit",
    "SyncSharedCache": "lwa_middleware._engine.shared_cache:SyncSharedCache",
    "TLS_CONNECT_TIMEOUT": "lwa_middleware._engine.shared_cache._drivers:TLS_CONNECT_TIMEOUT",
    "_Call": "lwa_middleware._engine.shared_cache._steps:_Call",
    "_Listen": "lwa_middleware._engine.shared_cache._steps:_Listen",
    "_Plan": "lwa_middleware._engine.shared_cache._steps:_Plan",
    "_Plans": "lwa_middleware._engine.shared_cache._plans:_Plans",
    "_SentinelPool": "lwa_middleware._engine.shared_cache._topology:_SentinelPool",
    "_Sleep": "lwa_middleware._engine.shared_cache._steps:_Sleep",
    "_Subscribe": "lwa_middleware._engine.shared_cache._steps:_Subscribe",
    "_topology": "lwa_middleware._engine.shared_cache:_topology",
    "bucket": "lwa_middleware._engine.shared_cache._codec:bucket",
    "classify": "lwa_middleware._engine.shared_cache._health:classify",
    "close_client": "lwa_middleware._engine.shared_cache._topology:close_client",
    "connect_timeout": "lwa_middleware._engine.shared_cache._drivers:connect_timeout",
    "encode_identity": "lwa_middleware._engine.shared_cache._codec:encode_identity",
    "entry_keys": "lwa_middleware._engine.shared_cache._codec:entry_keys",
    "key_id": "lwa_middleware._engine.shared_cache._codec:key_id",
    "make_client": "lwa_middleware._engine.shared_cache._topology:make_client",
    "rejection_body": "lwa_middleware._engine.shared_cache._codec:rejection_body",
    "token_key": "lwa_middleware._engine.shared_cache._codec:token_key",
    # sign-in internals (sessions, cookies, origins) tested as units
    "LOGIN_TTL": "lwa_middleware.signin._core:LOGIN_TTL",
    "SIGNIN_OPTIONS": "lwa_middleware.signin._options:SIGNIN_OPTIONS",
    "Sealer": "lwa_middleware.signin._sessions:Sealer",
    "canonical_origin": "lwa_middleware.signin._origins:canonical_origin",
    "origin_matches": "lwa_middleware.signin._origins:origin_matches",
    "safe_next": "lwa_middleware.signin._cookies:safe_next",
    "token_request": "lwa_middleware.signin._transport:token_request",
    # single-flight, tested with racing callers
    "MAX_JOINS": "lwa_middleware._engine.singleflight:MAX_JOINS",
    "TaskFlights": "lwa_middleware._engine.singleflight:TaskFlights",
    "ThreadFlights": "lwa_middleware._engine.singleflight:ThreadFlights",
    # the counters the middleware exposes
    "Stats": "lwa_middleware._engine.stats:Stats",
    # the emulator's internals (TLS material, server, state)
    "_pem_files": "lwa_middleware.testing._tls:_pem_files",
    # token extraction, tested on raw scopes and environs
    "MAX_TOKEN_BYTES": "lwa_middleware._engine.tokens:MAX_TOKEN_BYTES",
    "extract_token": "lwa_middleware._engine.tokens:extract_token",
    "looks_like_lwa_token": "lwa_middleware._engine.tokens:looks_like_lwa_token",
    "may_carry_token": "lwa_middleware._engine.tokens:may_carry_token",
    "strip_query": "lwa_middleware._engine.tokens:strip_query",
    # the LWA client: tests swap its transport for a faulty one
    "AsyncDriver": "lwa_middleware._engine.upstream:AsyncDriver",
    "_Seats": "lwa_middleware._engine.upstream:_Seats",
}


def __getattr__(name: str) -> object:
    try:
        module, _, attr = WHERE[name].partition(":")
    except KeyError:
        raise AttributeError(f"support.private has no {name!r}: add it to WHERE") from None
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError:
        return importlib.import_module(f"{module}.{attr}")


# Private attributes of a middleware, one reader each: private_fleet(mw) is mw.resolver._fleet.

# the revocation subscriber of a middleware's shared cache: whether it is subscribed, its
# reconnects; stopped and started to lose pushes
private_fleet = attrgetter("resolver._fleet")

# a WSGI middleware's shared cache: degraded, skipped, waits, its breaker
private_sync_shared = attrgetter("resolver._sync_shared")

# an ASGI middleware's shared cache, the same for asyncio
private_async_shared = attrgetter("resolver._async_shared")

# the LWA client of a WSGI middleware: its in-flight slots
private_sync_driver = attrgetter("resolver._sync_driver")

# the LWA client of an ASGI middleware: closed at lifespan end
private_async_driver = attrgetter("resolver._async_driver")

# a middleware's lookups in flight on threads: none left over
private_thread_flights = attrgetter("resolver._threads")

# a middleware's lookups in flight on tasks: none left over
private_task_flights = attrgetter("resolver._tasks")

# the event loop of a WSGI middleware's I/O thread (started by its first lookup): stopped
# to stand for a loop thread that died
private_io_loop = attrgetter("resolver._sync_driver._aio._started")
# The WSGI driver's I/O loop thread itself (its start lock across a fork).
private_loop_thread = attrgetter("resolver._sync_driver._aio")

# The shared cache's plans (sans-IO: each yields the Redis calls it would make), driven step by
# step by tests/support/plans.py: each reader is one step or one piece of state a plan keeps,
# which no public API shows (a middleware runs them all at once, against Redis).

# a read: the lookup of a token (with or without taking the fill lease)
plan_get = attrgetter("_get")
# a write of a resolved identity or rejection
plan_put = attrgetter("_put")
# a revocation (the entry and its marker for the other workers)
plan_revoke = attrgetter("_revoke")
# a failed lookup's record (the lease freed, the back-off armed)
plan_failure = attrgetter("_record_failure")
# a lost-revocation check (the epochs a worker last saw)
plan_check_lost = attrgetter("_check_lost")
# the replay of revocations after a reconnect
plan_replay = attrgetter("_replay_plan")
# a revocation kept in memory for the replay
plan_remember = attrgetter("_remember")
# a discard of a token's entries
plan_discard = attrgetter("_discard")
# a token's keyed digest (the Redis key's part)
plan_hex = attrgetter("_hex")
# the codec that seals and opens values (to write what Redis would hold)
plan_codec = attrgetter("_codec")
# the key and MAC secret in use
plan_secret = attrgetter("_secret")
# the data set's marker, as last seen
plan_epoch = attrgetter("_epoch")
# the revocation epochs seen, by bucket
plan_epochs = attrgetter("_epochs")
# the fill leases held, by digest
plan_leases = attrgetter("_leases")
# the revocations remembered for the replay
plan_revocations = attrgetter("_revocations")
# the in-process copy the plans fall back on
plan_memory = attrgetter("_memory")


def set_plan_epoch(plans: object, epoch: bytes) -> None:
    """The data set's marker, as if last seen: a plan starts from a known one."""
    plans._epoch = epoch  # type: ignore[attr-defined]


def set_plan_wall(plans: object, wall: object) -> None:
    """The plans' wall clock (Redis TTLs are wall time), held still."""
    plans._wall = wall  # type: ignore[attr-defined]


def set_plan_jitter(plans: object, jitter: object) -> None:
    """The back-off's jitter, at one end of its range."""
    plans._jitter = jitter  # type: ignore[attr-defined]


def end_plan_backoff(plans: object) -> None:
    """Past the back-off after a Redis fault, without waiting it out."""
    plans._skip_until = 0.0  # type: ignore[attr-defined]


# A SignIn's sessions as its store holds them: tests plant a changed session (another worker's
# renewal, a revoked refresh token) and read it back, which a user only does through requests.


def session_key(signin: Any, session_id: str) -> str:
    """The store key of a browser's session id (a keyed digest, never the id)."""
    key: str = signin._key("session", session_id)
    return key


def load_session(signin: Any, key: str) -> Any:
    """The session stored under ``key``, unsealed (``None`` if none, or ended)."""
    return signin._load(key)


def save_session(signin: Any, key: str, session: Any) -> None:
    """Seal and store ``session`` under ``key``, as a refresh or a sign-in would."""
    signin._save(key, session)


# a memory session store's sealed values by key: what is kept at rest
memory_store_items = attrgetter("_items")

# The request gate and the in-process cache, tested as units (no public API shows their
# inside: a middleware only answers requests, and counts in mw.stats()).

# a gate's counters (hits, lookups), before any middleware sums them
gate_stats = attrgetter("_stats")
# the resolver a gate asks (its cache, to plant an entry)
gate_resolver = attrgetter("_resolver")
# an identity cache's entries: what it keeps, by token digest
cache_entries = attrgetter("_entries")
# an identity cache's rejections (None when the negative cache is off)
cache_rejections = attrgetter("_rejections")
# an identity cache's lock: its tables read while no request changes them
cache_lock = attrgetter("_lock")
# an ASGI middleware's judgement of a request past the fast path (wrapped to count calls)
asgi_judge = attrgetter("_judge")


def set_asgi_judge(mw: Any, judge: Any) -> None:
    """Put ``judge`` in place of the middleware's, to see whether a request reaches it."""
    mw._judge = judge


def wired_resolvers(signin: Any) -> list[Any]:
    """The resolvers of the live middlewares a SignIn is wired into (its logout revokes on each)."""
    resolvers: list[Any] = signin._attached()
    return resolvers
