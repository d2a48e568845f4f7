-- The segment table as webhookd's plain commands see it (plain.rs), after counting the
-- ids they just wrote to the newest segment; follows dedup_core.lua. Sent after those
-- commands, in the same pipeline: if the newest segment is no longer the one they wrote to,
-- another replica opened one before they ran, and webhookd settles them in a script.
-- KEYS[1]  the segment table
-- ARGV     window_ms, span_ms, the segment written to ('' for none), ids written to it
-- Returns  {Redis's time in ms, then per live segment: id, "start count n"}
local window, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local segs = load_segments(KEYS[1], '', span, window, now)
local out = {now}
for _, seg in ipairs(segs) do
  local record = seg.start .. ' ' .. seg.count .. ' ' .. seg.n
  if ARGV[3] ~= '' and seg.id == tonumber(ARGV[3]) then
    record = seg.start .. ' ' .. (seg.count + tonumber(ARGV[4])) .. ' ' .. seg.n
    call('HSET', KEYS[1], ARGV[3], record)
  end
  out[#out + 1] = string.sub(seg.prefix, 1, -2)
  out[#out + 1] = record
end
return out
