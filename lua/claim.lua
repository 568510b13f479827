-- claim.lua: claim idempotency keys, each atomically with SET NX PX.
--
-- KEYS[i]      record key of item i, for i = 1..n, n = #KEYS (distinct keys)
-- ARGV[i]      record value of item i, built by the client:
--              "<header><ttl><fingerprint?><run id>" (state running; see
--              parse_record in crates/runonce/src/store/mod.rs)
-- ARGV[n+1..]  the TTLs in ms, positive integers: either one for every
--              item (ARGV[n+1]; the common case, sent once), or one per
--              item (ARGV[n+i])
-- ARGV[last]   optional: "w" when the caller WAITs for replicas after this
--              call; a held record is then re-written in place (same value,
--              same TTL) so that the WAIT covers it as well, and an item
--              whose re-write the server refuses answers "E<error>"
--
-- Returns n (an integer) when every key was free and is now claimed with
-- its TTL. Otherwise one entry per key, in KEYS order:
--   1                      the key was free; it is now claimed with its TTL
--   {record, pttl, now}    the key is held by a live record; nothing
--                          written; now = the server's clock in ms
--   "E<error>"             the server refused the write (e.g. OOM); nothing
--                          written for this item
-- The client decides re-entrancy (record's run id == candidate) and payload
-- mismatch from the returned record, so a held key is never modified: its
-- TTL is not extended and the caller's TTL is ignored.
--
-- One SET NX per key, with no string work: the value arrives whole. On
-- Redis 7.0 and later it is SET NX GET, which answers nil for a key it just
-- claimed and the record for a held key, so a held key costs no second
-- command and a claimed one no reply table (Redis 6.2 refuses NX with GET:
-- there, SET NX and then GET for a held key). A SET refused by the server
-- (maxmemory under noeviction answers OOM) does not abort the script: the
-- key is read instead, so held keys still answer at the memory limit, and a
-- free key answers "E<error>" for that item alone.
local n = #KEYS
local m = #ARGV
local durable = ARGV[m] == 'w'
if durable then
  m = m - 1
end
-- One TTL for all (m == n + 1) or one per item (m == 2n; for n = 1 the
-- two layouts are the same).
local step = 1
if m == n + 1 then
  step = 0
end
local out -- created at the first item that is not a plain claim
local now
local function other(i)
  if not out then
    out = {}
    for j = 1, i - 1 do
      out[j] = 1
    end
  end
end
local function held(key, v)
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return { v, redis.call('PTTL', key), now }
end
-- redis.REDIS_VERSION_NUM exists from 7.0 on.
local nx_get = redis.REDIS_VERSION_NUM ~= nil
for i = 1, n do
  local key, ttl = KEYS[i], ARGV[n + 1 + step * (i - 1)]
  local set, v
  if nx_get then
    set = redis.pcall('SET', key, ARGV[i], 'NX', 'PX', ttl, 'GET')
    -- false: claimed now; a string: the held record.
    if type(set) == 'string' then
      v = set
    end
  else
    set = redis.pcall('SET', key, ARGV[i], 'NX', 'PX', ttl)
    if set == false then
      v = redis.call('GET', key)
    end
  end
  if v then
    other(i)
    out[i] = held(key, v)
    if durable then
      local again = redis.pcall('SET', key, v, 'XX', 'KEEPTTL')
      if type(again) == 'table' and again.err then
        out[i] = 'E' .. again.err
      end
    end
  elseif type(set) == 'table' and set.err then
    other(i)
    -- (A durable caller cannot confirm a held record the server will not
    -- re-write: the item answers the error.)
    v = not durable and redis.call('GET', key)
    if v then
      out[i] = held(key, v)
    else
      out[i] = 'E' .. set.err
    end
  elseif out then
    out[i] = 1
  end
end
return out or n
