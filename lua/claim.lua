-- claim.lua: claim idempotency keys, each atomically with SET NX PX.
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
--   "E<error>"             the server refused the write (e.g. OOM); nothing
--                          written for this item
-- The client decides re-entrancy (record's run id == candidate) and payload
-- mismatch from the returned record, so a held key is never modified: its
-- TTL is not extended and the caller's TTL is ignored.
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
--
-- The fast path is one SET NX per free key. A SET refused by the server
-- (maxmemory under noeviction answers OOM) does not abort the script: the
-- key is read instead, so held keys still answer at the memory limit, and a
-- free key answers "E<error>" for that item alone.
local out = {}
for i = 1, #KEYS do
  local ttl = ARGV[2 * i]
  local set = redis.pcall('SET', KEYS[i], 'R' .. now .. ':' .. ARGV[2 * i - 1], 'NX', 'PX', ttl)
  if set == false then
    out[i] = { redis.call('GET', KEYS[i]), redis.call('PTTL', KEYS[i]) }
  elseif type(set) == 'table' and set.err then
    local held = redis.call('GET', KEYS[i])
    if held then
      out[i] = { held, redis.call('PTTL', KEYS[i]) }
    else
      out[i] = 'E' .. set.err
    end
  else
    out[i] = tonumber(ttl)
  end
end
return out
