-- The segment table as webhookd's plain commands see it (plain.rs), after counting the ids
-- they just wrote to the newest segment. Sent after those commands, in the same pipeline: if
-- the newest segment is no longer the one they wrote to, another replica opened one before
-- they ran, and webhookd settles them in a script. Stands alone (not after dedup_core.lua,
-- whose tables a call would build for nothing), and turns one number into text a call: it
-- runs for every batch (BENCHMARKS.md, issue 16's twenty-third slice).
-- KEYS[1]  the segment table (records "start count n", as dedup_core.lua writes them)
-- ARGV     window_ms, span_ms, the segment written to ('' for none), ids written to it
-- Returns  {Redis's time in ms, then per live segment: id, record}; expired ones leave the
--          table, as dedup_core.lua's load_segments does.
local call = redis.call
local window, span, written, added = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local raw = call('HGETALL', KEYS[1])
local out = {now}
for i = 1, #raw, 2 do
  local id, record = raw[i], raw[i + 1]
  local s, c, n = string.match(record, '^(%d+) (%d+) (%d+)$')
  if tonumber(s) + span + window <= now then
    call('HDEL', KEYS[1], id)
  else
    if id == written then
      record = s .. ' ' .. (tonumber(c) + tonumber(added)) .. ' ' .. n
      call('HSET', KEYS[1], id, record)
    end
    out[#out + 1] = id
    out[#out + 1] = record
  end
end
return out
