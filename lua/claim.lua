-- claim.lua: claim idempotency keys, each atomically with SET NX PX.
--
-- KEYS[i]      record key of item i, for i = 1..#KEYS (distinct keys)
-- ARGV[2i-1]   record tail of item i: "<form><fingerprint?><run id>"
-- ARGV[2i]     TTL of item i in ms, a positive integer
-- ARGV[2n+1]   optional, n = #KEYS: "w" when the caller WAITs for replicas
--              after this call; a held record is then re-written in place
--              (same value, same TTL) so that the WAIT covers it as well,
--              and an item whose re-write the server refuses answers
--              "E<error>"
--
-- A record is the string "<state><created><tail>": state 'R' (running) on
-- creation, and created the server's clock in ms since the Unix epoch, as
-- 48 bits big-endian in 8 base64url characters. The client builds the tail
-- (form character, optional 11-character fingerprint, run id) and parses
-- the whole record; see parse_record in crates/runonce/src/store/mod.rs.
--
-- Returns one entry per key, in KEYS order:
--   integer ttl            the key was free; it is now claimed with that TTL
--   {record, pttl}         the key is held by a live record; nothing written
--   "E<error>"             the server refused the write (e.g. OOM); nothing
--                          written for this item
-- The client decides re-entrancy (record's run id == candidate) and payload
-- mismatch from the returned record, so a held key is never modified: its
-- TTL is not extended and the caller's TTL is ignored.
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local created = {}
for i = 8, 1, -1 do
  local d = ms % 64
  created[i] = string.sub(B64, d + 1, d + 1)
  ms = (ms - d) / 64
end
local head = 'R' .. table.concat(created)
--
-- The fast path is one SET NX per free key. A SET refused by the server
-- (maxmemory under noeviction answers OOM) does not abort the script: the
-- key is read instead, so held keys still answer at the memory limit, and a
-- free key answers "E<error>" for that item alone.
local durable = ARGV[2 * #KEYS + 1] == 'w'
local out = {}
for i = 1, #KEYS do
  local ttl = ARGV[2 * i]
  local set = redis.pcall('SET', KEYS[i], head .. ARGV[2 * i - 1], 'NX', 'PX', ttl)
  if set == false then
    local held = redis.call('GET', KEYS[i])
    out[i] = { held, redis.call('PTTL', KEYS[i]) }
    if durable then
      local again = redis.pcall('SET', KEYS[i], held, 'XX', 'KEEPTTL')
      if type(again) == 'table' and again.err then
        out[i] = 'E' .. again.err
      end
    end
  elseif type(set) == 'table' and set.err then
    -- (A durable caller cannot confirm a held record the server will not
    -- re-write: the item answers the error.)
    local held = not durable and redis.call('GET', KEYS[i])
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
