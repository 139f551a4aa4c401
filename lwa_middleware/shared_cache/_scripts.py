"""The Lua scripts the shared cache runs in Redis, and the replies they give.

Each round trip the plans make is one of these scripts (or a plain ``DEL``),
so a read, a write or a restore is atomic in Redis: no other worker's
command lands between the revocation check and the write it guards.
"""

from __future__ import annotations

from typing import Final

#: The ``kind`` in a reply of the read script (the numbers its Lua returns).
READ_MISS, READ_HIT, READ_REJECTED, READ_LEASE_TAKEN, READ_LEASE_HELD, READ_REVOKED = range(6)

# A value of the wrong type (someone else's data under our key) must be a
# miss, not a script error that would look like Redis being down.
_LUA_GET = """
local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false
  end
  return value
end
"""

# Every read and write also compares the data set's marker (KEYS[5]) with the
# one this worker knows (ARGV[4]): "lost" (1) when it is missing or another,
# i.e. Redis lost its data (flush, restart without persistence, failover) or
# another worker noticed that first. The worker then restores (_RESTORE).
_LUA_LOST = """
local lost = 0
if get(KEYS[5]) ~= ARGV[4] then lost = 1 end
"""

#: KEYS: id, rej, lease, rev, epoch, fence counter, then (rotation) the rev and
#: id keys under each older secret; a value found there also replies its KEYS
#: index. ARGV: lease nonce, lease PX
#: (0: do not take a lease), '1' to read only the revocation (a revalidate()
#: route) else '0', epoch.
#: Replies ``{lost, kind, value, pttl}``; a lease taken ``{lost, 3, lease value}``,
#: one held elsewhere ``{lost, 4, its PTTL, its value}``. A lease's value is
#: ``<fencing id>:<nonce>``, the fencing id from INCR on the counter, so every
#: lease ever taken on a Redis has a larger id than the ones before it.
#: A revocation (rev) outranks everything, even an identity written after it.
_READ = (
    _LUA_GET
    + _LUA_LOST
    + """
local value = get(KEYS[4])
if value then return {lost, 5, value, redis.call('PTTL', KEYS[4])} end
for i = 7, #KEYS, 2 do
  value = get(KEYS[i])
  if value then return {lost, 5, value, redis.call('PTTL', KEYS[i]), i} end
end
if ARGV[3] == '1' then return {lost, 0} end
value = get(KEYS[1])
if value then return {lost, 1, value, redis.call('PTTL', KEYS[1])} end
value = get(KEYS[2])
if value then return {lost, 2, value, redis.call('PTTL', KEYS[2])} end
for i = 8, #KEYS, 2 do
  value = get(KEYS[i])
  if value then return {lost, 1, value, redis.call('PTTL', KEYS[i]), i} end
end
if ARGV[2] == '0' then return {lost, 0} end
local held = get(KEYS[3])
if held then return {lost, 4, redis.call('PTTL', KEYS[3]), held} end
local lease = ARGV[1]
if KEYS[6] then lease = redis.call('INCR', KEYS[6]) .. ':' .. ARGV[1] end
redis.call('SET', KEYS[3], lease, 'PX', ARGV[2])
return {lost, 3, lease}
"""
)

#: KEYS: key to set, key to delete, lease, rev, epoch. ARGV: value, PX (0: do not
#: set), lease id, epoch. Replies ``lost``.
#: Nothing is written once the token is revoked (rev exists): a lookup that was
#: in flight when revoke() ran must not bring the identity back. The lease key
#: is also a channel: its waiters are told there that the answer is in.
_WRITE = (
    _LUA_GET
    + _LUA_LOST
    + """
if ARGV[2] ~= '0' and not get(KEYS[4]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' and get(KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', KEYS[3], '1')
return lost
"""
)

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

#: KEYS: secret. ARGV: a fresh random secret, kept only if none is there.
_SECRET = (
    _LUA_GET
    + """
if not get(KEYS[1]) then redis.call('SET', KEYS[1], ARGV[1], 'NX') end
return redis.call('GET', KEYS[1])
"""
)

#: KEYS: secret, epoch. ARGV: this worker's generated secret ('' when configured),
#: a fresh epoch. After data loss: put back the secret this worker already uses
#: (never a new one, so workers keep one key space) and a new marker, unless
#: another worker did first. Replies ``{secret or '', epoch}``.
_RESTORE = (
    _LUA_GET
    + """
if ARGV[1] ~= '' and not get(KEYS[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
if not get(KEYS[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return {get(KEYS[1]) or '', get(KEYS[2])}
"""
)

#: KEYS: revocation keys. ARGV: value and PX of each, in turn.
_REPLAY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'PX', ARGV[2 * i])
end
return 1
"""

#: KEYS: secret, then revocation keys. ARGV: the generated secret the hexes were
#: made with ('' when configured), then value and PX of each key. With a
#: generated secret, it is put back if gone (as _RESTORE does) and nothing is
#: written if Redis holds another: those keys would be in no one's key space.
_REASSERT = (
    _LUA_GET
    + """
if ARGV[1] ~= '' then
  local stored = get(KEYS[1])
  if not stored then redis.call('SET', KEYS[1], ARGV[1]); stored = ARGV[1] end
  if stored ~= ARGV[1] then return 0 end
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2 * i - 2], 'PX', ARGV[2 * i - 1])
end
return 1
"""
)

#: KEYS: the stream. ARGV: channel, MAXLEN, then one sealed message each.
#: Appends each message to the capped stream and publishes it on the channel
#: prefixed by its stream id (see :mod:`._fleet`). Replies the last id.
_ANNOUNCE = """
local id = ''
for i = 3, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[i])
  redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[i])
end
return id
"""

#: The scripts by the name a plan's ``_Call`` gives.
SCRIPTS: Final = {
    "read": _READ,
    "write": _WRITE,
    "release": _RELEASE,
    "secret": _SECRET,
    "restore": _RESTORE,
    "replay": _REPLAY,
    "announce": _ANNOUNCE,
    "reassert": _REASSERT,
}
