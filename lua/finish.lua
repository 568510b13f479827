-- finish.lua: compare-and-set / compare-and-delete of a record by its owner.
--
-- KEYS[1]   record key
-- ARGV[1]   run id claiming ownership
-- ARGV[2]   new state code: 'S' succeeded, 'C' canceled, 'F' failed-kept;
--           '' deletes the record (release)
--
-- A record is "<state><ttl: 8 chars><form><fingerprint?><run id>" (see
-- claim.lua): form '0'..'3', bit 1 = an 11-character fingerprint follows,
-- bit 2 = the run id's "run_" prefix is elided.
--
-- Returns 1 when the record changed; 0 when there is no record, another run
-- owns it (a stale worker), or it is already in that state. The TTL is kept.
local v = redis.call('GET', KEYS[1])
if not v then
  return 0
end
local form = (string.byte(v, 10) or 0) - 48
if form < 0 or form > 3 then
  return 0
end
local owner = string.sub(v, (form % 2 == 1) and 22 or 11)
if form >= 2 then
  owner = 'run_' .. owner
end
if owner ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
if string.sub(v, 1, 1) == ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, 2), 'KEEPTTL')
return 1
