-- finish.lua: compare-and-set / compare-and-delete of a record by its owner.
--
-- KEYS[1]   record key
-- ARGV[1]   run id claiming ownership
-- ARGV[2]   new state code: 'S' succeeded, 'C' canceled, 'F' failed-kept;
--           '' deletes the record (release)
--
-- A record is "<header><ttl: 6 chars><fingerprint?><run id>" (see
-- parse_record in crates/runonce/src/store/mod.rs). The header is one
-- base64url digit, state * 4 + form: state 0 running, 1 succeeded,
-- 2 canceled, 3 failed; form bit 1 = an 11-character fingerprint follows,
-- bit 2 = the run id's "run_" prefix is elided.
--
-- Returns 1 when the record changed; 0 when there is no record, another run
-- owns it (a stale worker), or it is already in that state. The TTL is kept.
local DIGITS = 'ABCDEFGHIJKLMNOP'
local STATES = { R = 0, S = 1, C = 2, F = 3 }
local v = redis.call('GET', KEYS[1])
if not v or #v < 8 then
  return 0
end
local h = string.find(DIGITS, string.sub(v, 1, 1), 1, true)
if not h then
  return 0
end
h = h - 1
local form = h % 4
local state = (h - form) / 4
local owner = string.sub(v, (form % 2 == 1) and 19 or 8)
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
local to = STATES[ARGV[2]]
if to == nil or to == state then
  return 0
end
local head = to * 4 + form + 1
redis.call('SET', KEYS[1], string.sub(DIGITS, head, head) .. string.sub(v, 2), 'KEEPTTL')
return 1
