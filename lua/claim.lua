-- claim.lua: claim idempotency keys, each atomically (GET, then SET PX when
-- free: SET NX semantics inside one atomic script).
--
-- KEYS[i]      record key of item i, for i = 1..#KEYS (distinct keys)
-- ARGV[2i-1]   record tail of item i: "<fingerprint hex or empty>:<run id>"
-- ARGV[2i]     TTL of item i in ms, a positive integer
--
-- A record is the string "<state><created ms>:<fingerprint hex>:<run id>",
-- state 'R' (running) on creation, created ms read from the server's clock.
--
-- Returns one entry per key, in KEYS order:
--   integer ttl            the key was free; it is now claimed with that TTL
--   {record, pttl}         the key is held by a live record; nothing written
-- The client decides re-entrancy (record's run id == candidate) and payload
-- mismatch from the returned record, so a held key is never modified: its
-- TTL is not extended and the caller's TTL is ignored.
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
--
-- A held key is read before any write is attempted, so at maxmemory (under
-- noeviction) cached answers keep working; only new claims get OOM.
local out = {}
for i = 1, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held then
    out[i] = { held, redis.call('PTTL', KEYS[i]) }
  else
    local ttl = ARGV[2 * i]
    redis.call('SET', KEYS[i], 'R' .. now .. ':' .. ARGV[2 * i - 1], 'PX', ttl)
    out[i] = tonumber(ttl)
  end
end
return out
