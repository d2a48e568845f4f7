-- A light read and its duplicate check in one call (ingest/dedup.rs); follows dedup_core.lua.
-- Reads up to `count` new entries for the consumer and claims each one's event id as
-- dedup.lua would, from the event's own JSON: a read and a check in one round trip.
-- KEYS[1]  the stream, KEYS[2] the segment table, KEYS[3] the previous layout's segment table
-- ARGV     group, consumer, count, window_ms, span_ms, per, key base, largest event checked here,
--          with_v2 (1: the previous layout's table may still hold ids), bytes of events taken
--          apart in all (Redis parses them while every other client waits)
-- Returns {the XREADGROUP reply (nil: none), [per entry: 1, 0 or -1, per entry: fingerprint
-- or '']}. -1 (and no verdicts at all, while the previous layout's ids may still be in their
-- window) leaves the entry to be checked by dedup.lua once it is parsed: an event this script
-- cannot take apart, or one over the size it takes apart here, or past the bytes it takes
-- apart in one call.
local read = call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not read then return {false} end
if ARGV[9] == '1' and call('EXISTS', KEYS[3]) == 1 then return {read} end
local window, span, per = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local largest, budget = tonumber(ARGV[8]), tonumber(ARGV[10])
local ours = segments(KEYS[2], ARGV[7], window, span, per, now_ms())

-- Each pair of hex digits' byte, made the first time it is needed: a function call per pair
-- for every id cost Redis more than the table lookups.
local bytes = setmetatable({}, {__index = function(t, c)
  local b = string.char(tonumber(c, 16))
  t[c] = b
  return b
end})
local function raw(hex)
  return (string.gsub(hex, '..', bytes))
end

-- The event's tenant and id, if its `event` field is a JSON object small enough with both.
local function ids(fields)
  for j = 1, #fields, 2 do
    if fields[j] == 'event' then
      local text = fields[j + 1]
      if #text > largest or #text > budget then return end
      budget = budget - #text
      local ok, ev = pcall(cjson.decode, text)
      if ok and type(ev) == 'table' and type(ev.tenant) == 'string' and type(ev.id) == 'string' then
        return ev.tenant, ev.id
      end
      return
    end
  end
end

local verdicts, fps = {}, {}
for _, entry in ipairs(read[1][2]) do
  local tenant, id = ids(entry[2])
  if tenant then
    local fp = raw(string.sub(redis.sha1hex('webhookd dedup v3\0' .. tenant .. '\0' .. id), 1, 32))
    local tag = tostring(tonumber(string.sub(redis.sha1hex(entry[1]), 1, 6), 16))
    verdicts[#verdicts + 1] = ours.claim(fp, tag)
    fps[#fps + 1] = fp
  else
    verdicts[#verdicts + 1] = -1
    fps[#fps + 1] = ''
  end
end
ours.save()
return {read, verdicts, fps}
