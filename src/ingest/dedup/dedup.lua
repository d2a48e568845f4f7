-- The duplicate check of entries already read (ingest/dedup.rs), one call per batch; follows
-- dedup_core.lua.
-- KEYS[1]  the segment table (this layout's), KEYS[2] the previous layout's segment table
-- ARGV     window_ms, span_ms, per, key base, previous layout's key base,
--          with_v2 (1: the previous layout's ids are passed too),
--          legacy (1: also read the first layout's keys, one per id),
--          settle (1: the newest segment holding an id decides; see `claim` in dedup_core.lua),
--          then per event: fingerprint (16 bytes), owner tag,
--          [with_v2: previous fingerprint, previous owner tag], [legacy: legacy key, entry id]
-- Returns per event 1 (first sighting, or its owner read again) or 0 (a duplicate), then
-- (with_v2) 1 if the previous layout's table still holds segments: its ids are still to be
-- passed. Without with_v2 it is not looked at (webhookd found it gone).
local window, span, per = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local with_v2, legacy, settle = ARGV[6] == '1', ARGV[7] == '1', ARGV[8] == '1'
local now = now_ms()
local ours = segments(KEYS[1], ARGV[4], window, span, per, now)
local previous
if with_v2 then
  previous = segments(KEYS[2], ARGV[5], window, span, per, now)
  if previous.empty() then previous = nil end
end

local stride = 2 + (with_v2 and 2 or 0) + (legacy and 2 or 0)
local out = {}
for i = 9, #ARGV, stride do
  local also
  if previous or legacy then
    also = function()
      local j = i + 2
      if with_v2 then
        if previous then
          local seen = previous.seen(ARGV[j], ARGV[j + 1])
          if seen then return seen end
        end
        j = j + 2
      end
      if legacy then
        local owner = call('GET', ARGV[j])
        if owner then return owner == ARGV[j + 1] and 1 or 0 end
      end
    end
  end
  out[#out + 1] = ours.claim(ARGV[i], ARGV[i + 1], also, settle)
end
ours.save()
out[#out + 1] = previous and 1 or 0
return out
