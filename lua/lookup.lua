-- lookup.lua: read a record, its time left and the server's clock in one
-- atomic step.
--
-- KEYS[1]   record key
--
-- Returns {record, pttl, now} for a live record (now = the server's clock
-- in ms, from which the client derives the creation time), nil when there
-- is none.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
local t = redis.call('TIME')
return { v, redis.call('PTTL', KEYS[1]), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) }
