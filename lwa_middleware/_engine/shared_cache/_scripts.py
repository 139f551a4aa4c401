"""The Lua scripts the shared cache runs in Redis, and the replies they give.

Each round trip the plans make is one of these scripts (or a plain ``DEL``),
so a read or a write is atomic in Redis: no other worker's command lands
between the revocation check and the write it guards. Every script touches
the keys of one hash slot only (a token's keys and its bucket's marker and
counter share the hash tag ``{<bucket>}``; the secret and the stream are one
key each), so they run unchanged on a Redis Cluster.
"""

from __future__ import annotations

from typing import Any, Final

#: The ``kind`` in a reply of the read script (the numbers its Lua returns).
READ_MISS, READ_HIT, READ_REJECTED, READ_LEASE_TAKEN, READ_LEASE_HELD, READ_REVOKED = range(6)

# A value of the wrong type (someone else's data under our key) must be a
# miss, not a script error that would look like Redis being down.
_LUA_GET = """
local function written(reply)
  return not (type(reply) == 'table' and reply.err)
end
local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false
  end
  return value
end
"""

# Every read and write also compares the marker of the token's bucket
# (KEYS[5], ``lwa:v1:{<bucket>}:epoch``: in the token's slot) with the one this
# worker knows (ARGV[4]; '' when it never met this bucket). ``lost`` is 0 when
# it is the one the worker knows; else the marker stored, when it is another
# (the worker meets the bucket for the first time, or the bucket lost its
# data and another worker noticed first); or, when the marker was missing (a
# bucket no one used yet, or data lost: flush, restart without persistence,
# failover), ``{marker}``: the fresh one (ARGV[5]) it is replaced with at once.
# See _plans._check_lost.
#
# Redis full (``maxmemory`` under ``noeviction``, issue 24 item 5): the writes
# a lookup makes on the side (a marker, a lease, an identity) go through
# ``pcall`` and are skipped, so reads (revocations above all) keep working
# and the breaker stays closed; a marker that cannot be made reads as known.
def _lua_lost(key: str, known: str, fresh: str) -> str:
    return f"""
local lost = get({key})
if not lost then
  if written(redis.pcall('SET', {key}, {fresh})) then lost = {{{fresh}}} else lost = 0 end
elseif lost == {known} then
  lost = 0
end
"""


_LUA_LOST = _lua_lost("KEYS[5]", "ARGV[4]", "ARGV[5]")

#: KEYS: the data set's marker ``lwa:v1:epoch`` (a key of its own). ARGV: the
#: one this worker knows ('' if none), a fresh one. Replies ``lost``, as the
#: bucket markers do: asked when a bucket's marker was missing, to tell a new
#: bucket (the data set's marker is the same) from data loss.
_MARKER = _LUA_GET + _lua_lost("KEYS[1]", "ARGV[1]", "ARGV[2]") + "return lost\n"

#: KEYS: id, rej, lease, rev, the bucket's marker, its fencing counter: one slot.
#: ARGV: lease nonce, lease PX (0: do not take a lease), mode ('0': a full
#: read; '1': the revocation only, for a revalidate() route; '2': revocation
#: then identity, for the keys under an older secret), known marker, fresh marker.
#: Replies ``{lost, kind, value, pttl}``; a lease taken ``{lost, 3, lease value}``,
#: one held elsewhere ``{lost, 4, its PTTL, its value}``. A lease's value is
#: ``<fencing id>:<nonce>``, the fencing id from INCR on the bucket's counter, so
#: every lease ever taken on a token has a larger id than the ones before it.
#: A revocation (rev) outranks everything, even an identity written after it.
_READ = (
    _LUA_GET
    + _LUA_LOST
    + """
local value = get(KEYS[4])
if value then return {lost, 5, value, redis.call('PTTL', KEYS[4])} end
if ARGV[3] == '1' then return {lost, 0} end
value = get(KEYS[1])
if value then return {lost, 1, value, redis.call('PTTL', KEYS[1])} end
if ARGV[3] == '2' then return {lost, 0} end
value = get(KEYS[2])
if value then return {lost, 2, value, redis.call('PTTL', KEYS[2])} end
if ARGV[2] == '0' then return {lost, 0} end
local held = get(KEYS[3])
if held then return {lost, 4, redis.call('PTTL', KEYS[3]), held} end
local fence = redis.pcall('INCR', KEYS[6])
if not written(fence) then return {lost, 0, 'oom'} end
local lease = fence .. ':' .. ARGV[1]
if not written(redis.pcall('SET', KEYS[3], lease, 'PX', ARGV[2])) then
  return {lost, 0, 'oom'}
end
return {lost, 3, lease}
"""
)

#: KEYS: key to set, key to delete, lease, rev, the bucket's marker: one slot.
#: ARGV: value, PX (0: do not set), lease id, known marker, fresh marker.
#: Replies ``lost`` (as the read script).
#: Replies -1 instead when Redis was too full to store the value (noeviction):
#: the lease is released and published all the same.
#: Nothing is written once the token is revoked (rev exists): a lookup that was
#: in flight when revoke() ran must not bring the identity back. The lease key
#: is also a channel: its waiters are told there that the answer is in.
#: Fenced: a holder whose lease ran out and was taken by another lookup
#: writes nothing (the newer holder's answer is the one to keep, and its
#: waiters wait for it).
_WRITE = (
    _LUA_GET
    + _LUA_LOST
    + """
if ARGV[3] ~= '' then
  local holder = get(KEYS[3])
  if holder and holder ~= ARGV[3] then return lost end
end
local stored = true
if ARGV[2] ~= '0' and not get(KEYS[4]) then
  stored = written(redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]))
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' and get(KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', KEYS[3], '1')
if not stored and lost == 0 then return -1 end
return lost
"""
)

#: Redis 7's script flag that lets a script write past ``maxmemory``. Only
#: revocations carry it (written, re-asserted, announced: small, rare, and
#: what must never be lost); a Redis without flags (< 7) runs them unflagged.
ALLOW_OOM: Final = "#!lua flags=allow-oom\n"

#: A revocation (or rejection) written with :data:`_WRITE`'s keys and
#: arguments, even when Redis is full (the flag makes ``pcall`` succeed).
_REVOKE = ALLOW_OOM + _WRITE

#: KEYS: lease. ARGV: lease id. Deletes the lease only if it is still ours.
_RELEASE = (
    _LUA_GET
    + """
if get(KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1], '1')
end
return 1
"""
)

#: KEYS: secret. ARGV: a random secret, kept only if none is there (a fresh
#: one, or after data loss the one this worker already uses: never a new one,
#: so workers keep one key space); optionally a channel and a message: then a
#: fresh one is not stored if that message, published there, reached anyone
#: (processes holding a secret listen there and put theirs back at once), and
#: the reply is ''. Replies the secret stored.
_SECRET = (
    _LUA_GET
    + """
if not get(KEYS[1]) then
  if ARGV[2] and ARGV[2] ~= '' and redis.call('PUBLISH', ARGV[2], ARGV[3]) > 0 then
    return ''
  end
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
end
return redis.call('GET', KEYS[1])
"""
)

#: KEYS: revocation keys (on a Cluster: of one slot). ARGV: value and PX of
#: each, in turn.
_REPLAY = ALLOW_OOM + """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return 1
"""

#: KEYS: the stream. ARGV: channel, MAXLEN, then one sealed message each.
#: Appends each message to the capped stream and publishes it on the channel
#: prefixed by its stream id (see :mod:`._fleet`). Replies the last id.
_ANNOUNCE = ALLOW_OOM + """
local id = ''
for i = 3, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i])
  redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[i])
end
return id
"""

#: KEYS: the stream. ARGV: MAXLEN, a marker message. Appends it, even past
#: maxmemory (a subscriber must connect to a full Redis); replies its id.
_HELLO = ALLOW_OOM + """
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
"""

#: KEYS: the stream. ARGV: the first id, how many entries, the most bytes an
#: entry may hold. Replies ``{id, message, id, message, ...}`` from that id on,
#: each message ``''`` when the entry is not a lone ``m`` field of at most that
#: size: the subscriber catching up never reads an oversized (junk) entry, so
#: its memory is bounded by a page, whatever was appended (see :mod:`._fleet`).
_PAGE = """
local out = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])) do
  local fields = entry[2]
  local message = ''
  if #fields == 2 and fields[1] == 'm' and #fields[2] <= tonumber(ARGV[3]) then
    message = fields[2]
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = message
end
return out
"""

#: The scripts by the name a plan's ``_Call`` gives.
SCRIPTS: Final = {
    "read": _READ,
    "write": _WRITE,
    "revoke": _REVOKE,
    "release": _RELEASE,
    "marker": _MARKER,
    "secret": _SECRET,
    "replay": _REPLAY,
    "announce": _ANNOUNCE,
    "hello": _HELLO,
    "page": _PAGE,
}


#: The scripts without their flag, for a Redis that knows none (< 7).
UNFLAGGED: Final = {
    name: script.removeprefix(ALLOW_OOM)
    for name, script in SCRIPTS.items()
    if script.startswith(ALLOW_OOM)
}


def flags_unknown(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis < 7 failing to compile a flagged script."""
    text = str(exc)
    return "Error compiling script" in text and "'#'" in text


def run_script(client: Any, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
    """Run script ``name`` by EVALSHA (loaded on NOSCRIPT), as the plans do:
    the ACL user needs no EVAL. A flagged script runs unflagged on a Redis
    that knows no flags."""
    try:
        return client.register_script(SCRIPTS[name])(keys=keys, args=args)
    except Exception as exc:
        if name not in UNFLAGGED or not flags_unknown(exc):
            raise
        return client.register_script(UNFLAGGED[name])(keys=keys, args=args)
