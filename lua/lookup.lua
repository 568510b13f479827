-- lookup.lua: read a record and its time left in one atomic step.
--
-- KEYS[1]   record key
--
-- Returns {record, pttl} for a live record, nil when there is none.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
return { v, redis.call('PTTL', KEYS[1]) }
