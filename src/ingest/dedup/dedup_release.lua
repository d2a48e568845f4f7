-- Gives back ids read_checked.lua claimed for entries that turned out invalid (ingest/dedup.rs),
-- so a valid entry carrying the same id is still delivered; follows dedup_core.lua.
-- KEYS[1]  the segment table; ARGV: window_ms, span_ms, key base, then per entry:
-- fingerprint, owner tag. A field is removed only while it still names that owner.
local window, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local segs = load_segments(KEYS[1], ARGV[3], span, window, now_ms())
local released = 0
for i = 4, #ARGV, 2 do
  local fp, tag = ARGV[i], ARGV[i + 1]
  local h = hash_of(fp)
  for _, seg in ipairs(segs) do
    local key = key_of(seg, h)
    if call('HGET', key, fp) == tag then
      call('HDEL', key, fp)
      released = released + 1
    end
  end
end
return released
