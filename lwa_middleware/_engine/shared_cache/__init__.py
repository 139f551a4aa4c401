"""The shared Redis cache, so that N worker processes resolve a token once.

:class:`~lwa_middleware.resolver.Resolver` asks this cache after its in-process cache and
its in-process single-flight, and before LWA. Under ASGI it uses
:class:`AsyncSharedCache` (redis-py's asyncio client), under WSGI
:class:`SyncSharedCache` (the blocking client). Both speak to Redis through a
:class:`redis.BlockingConnectionPool`, so a burst waits briefly for a
connection instead of failing with "too many connections".

What is stored
--------------

Keys are ``lwa:v1:{<b>}:id:<hex>`` (a resolved identity),
``lwa:v1:{<b>}:rej:<hex>`` (a token LWA rejected), ``lwa:v1:{<b>}:rev:<hex>``
(a token revoked by ``revoke()``) and ``lwa:v1:{<b>}:lease:<hex>`` (a lookup
in progress), where ``<hex>`` is an HMAC-SHA256 of the *whole* token,
prefixed by the LWA origin and the accepted client ids, under a server-side
secret, and ``<b>``, its *bucket*, the first three hex of it: a Redis Cluster
hash tag, so a token's keys and its bucket's marker ``lwa:v1:{<b>}:epoch``
and fencing counter ``lwa:v1:{<b>}:fence`` share one slot and every script
touches one slot only (4096 buckets, spread over every node). Two tokens sharing a
long prefix never share an entry, and two applications with different client
ids sharing one Redis never see each other's verdicts.

Values are JSON, never pickle: the identity fields, the scopes, the client
id, the epoch ``expires_at``, whether the profile was fetched, and a schema
version. Nothing stored can be turned back into a token. Every value (an
identity, a rejection, a revocation) is *sealed*: it starts with the hex
HMAC-SHA256, under a MAC key derived from the key secret
(``HMAC(secret, b"lwa:v1:mac")``), of the key's name and the JSON, checked
with :func:`hmac.compare_digest`. So whoever can write to Redis without the
secret can neither plant nor edit a value, nor copy one onto another token's
key. Every value is validated when read; a value whose MAC fails or that does
not validate is deleted and treated as a miss (values of schema 1, unsealed,
read as misses and are replaced).

An identity's Redis TTL is the smaller of ``cache_ttl`` and the token's
remaining life, and the reader rebuilds the token's deadline from
``expires_at``, so a shared entry never outlives its token even across
clocks. A worker that picks an entry up late keeps it fresh only for the
entry's remaining TTL (:attr:`SharedHit.fresh_for`). Rejections live for
``negative_cache_ttl``; transient failures are never stored.

The key secret
--------------

With ``cache_key_secret`` set, that secret keys the HMAC and never leaves the
process. Without it, the first worker to reach Redis stores 32 random bytes
with ``SET lwa:v1:secret <random> NX`` and every worker reads it back, so
every worker sharing the Redis shares the key space with no configuration.
The trade-off: anyone who can read that Redis can read the secret, and with
it test whether a token they already hold is cached (they still cannot
recover a token from a key) and, if they can also write, seal forged values:
the MAC then only stops someone who can write Redis but not read it. Set
``cache_key_secret`` (or ``LWA_CACHE_KEY_SECRET``) to keep the secret out of
Redis; a warning is logged (once a process) when it is not set. A generated secret
is re-read every :data:`SECRET_RECHECK` seconds and after any Redis failure;
a worker that finds it gone puts back the secret it already uses (never a
new one), so workers keep one key space if Redis restarts empty.

Data loss and revocations
-------------------------

Every read and write script also compares the marker of the token's bucket
(``lwa:v1:{<b>}:epoch``, random, made by the first script to find it missing)
with the one this worker knows. Changed, or gone from a bucket the worker
met, means the bucket lost its data (flush, restart without persistence,
failover; on a Cluster, the node holding it) or another worker noticed
first. Missing from a bucket the worker never met means a new bucket or a
loss, and one more round trip to the data set's marker ``lwa:v1:epoch``
tells which. On a loss the worker puts back the generated secret (never a
new one) and publishes again the revocations it made (kept in memory as
Redis hex and expiry, never the token), with their remaining TTL, and
learns the other buckets' markers anew. On a plain Redis that is the
worker's first round trip after the loss; on a Cluster, its first round
trip in a bucket of the node that lost it (and the subscriber re-asserts
every revocation on each reconnect and every 30 s, see :mod:`._fleet`). :meth:`revoke` and
:meth:`discard` use connections of their own with a longer deadline
(:data:`DURABLE_TIMEOUT`, :data:`DURABLE_ATTEMPTS` within
:data:`DURABLE_BUDGET`), even while backing off, and raise
:class:`~.errors.SharedCacheError` when Redis could not be written.

Cross-process single-flight
---------------------------

On a miss the reader also tries to take ``lwa:v1:{<b>}:lease:<hex>`` (``SET
NX`` for the LWA ``timeout`` plus :data:`._plans.LEASE_MARGIN`: the holder's
deadline and its write-back), in the same round trip. (Under asyncio the
resolver first reads without it, so a hit starts no flight task; a miss
reads again, with it.) Its value is ``<fencing id>:<nonce>``, the fencing id
from ``INCR lwa:v1:fence``. The worker that gets it asks LWA; the others
subscribe to the lease key as a channel, read again (so a publish in between
is not lost) and wait for the holder's publish, for at most the lease's PTTL
(restarted when the fencing id shows a new holder), and then ask LWA
themselves: a lease only ever saves calls, it never fails a request.
:meth:`put` and :meth:`record_failure` release the lease (only if it is
still exactly the one this worker took) and publish on it; when another
lookup holds it by then, they write nothing: its answer is the newer one.

Revocations pushed to every worker
----------------------------------

:meth:`revoke` and :meth:`discard` also announce the change on a channel and
a capped stream, and each process's :class:`Fleet` subscriber applies it to
its in-process cache at once, replaying the stream after a reconnect; see
:mod:`._fleet`.

Redis full
----------

At ``maxmemory`` under ``noeviction`` (the recommended policy) a lookup's
own writes (an identity, a lease, a marker) are skipped through ``pcall``
and logged as the ``oom`` fault without opening the breaker, so revocations
are still read; the scripts carrying a revocation are flagged ``allow-oom``
(Redis 7) and written past the limit. See :mod:`._scripts`.

Failures
--------

Redis down, slow or black-holed is a cache miss, never an authentication
failure and never a hang: every connect, reply and pool wait is bounded by
``redis_timeout`` (a TLS connect by its own budget, and each asyncio call by
an overall deadline), redis-py's retries are off, and a failure opens a
breaker (:mod:`._health`: back-off from :data:`BACKOFF` doubling to
:data:`BACKOFF_MAX` with jitter, then one half-open probe) so a dead Redis
does not add its timeout to every request. While it is open the cache is
``degraded`` and the resolver keeps its copies for ``cache_ttl``.
Configuration faults are classified and named with their fix. Failures
are logged on ``lwa_middleware.shared_cache`` at most once per
:data:`LOG_INTERVAL` seconds; recovery is automatic.

Clocks
------

Every monotonic reading (back-off, lease waits, the secret recheck, the log
throttle, the durable retry budget, the ``expires_mono`` of a hit and the
TTL of a put) is of ``settings.clock`` (``time.monotonic`` by default), so a
test can move time without sleeping. The one wall-clock reading, now against
the stored epoch ``expires_at``, goes through the cache's ``_wall``
(``time.time``).

Layout
------

:mod:`._codec` names the keys and seals and validates the values,
:mod:`._scripts` holds the Lua scripts, :mod:`._steps` what a plan yields,
:mod:`._plans` the logic (sans-IO generators that yield Redis round trips),
:mod:`._secret` the generated key secret, :mod:`._channel` the pushed messages,
:mod:`._health` the back-off, durable retries and log throttle,
:mod:`._fleet` the revocation subscriber,
:mod:`._drivers` the two thin drivers on redis-py, and :mod:`._tier` the
typed interface (:class:`SharedTier`) they give the resolver.
"""

from __future__ import annotations

from .._extras import needs_extra

# redis-py and cryptography come with the redis extra, not the base install.
with needs_extra("redis", "the shared cache (redis_url=, redis_client=)"):
    from ._channel import CHANNEL, STREAM
    from ._codec import SharedHit
    from ._drivers import AsyncSharedCache, SyncSharedCache
    from ._fleet import HEARTBEAT, Fleet
    from ._health import (
        ACL_RULES,
        BACKOFF,
        BACKOFF_MAX,
        CLUSTER_ACL_RULES,
        DURABLE_ATTEMPTS,
        DURABLE_BUDGET,
        DURABLE_TIMEOUT,
        LOG_INTERVAL,
    )
    from ._plans import POLL_INTERVAL
    from ._secret import SECRET_RECHECK
    from ._tier import Found, SharedTier

__all__ = [
    "ACL_RULES",
    "BACKOFF",
    "BACKOFF_MAX",
    "CHANNEL",
    "CLUSTER_ACL_RULES",
    "DURABLE_ATTEMPTS",
    "DURABLE_BUDGET",
    "DURABLE_TIMEOUT",
    "HEARTBEAT",
    "LOG_INTERVAL",
    "POLL_INTERVAL",
    "SECRET_RECHECK",
    "STREAM",
    "AsyncSharedCache",
    "Fleet",
    "Found",
    "SharedHit",
    "SharedTier",
    "SyncSharedCache",
]
