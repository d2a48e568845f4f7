-- The duplicate check (ingest/dedup.rs), one call per batch.
-- Ids are remembered in segments: a segment is `n` small hashes (fingerprint -> owner tag),
-- filled for at most `span` ms and kept until `start + span + window`. Each new segment sizes
-- `n` from the rate its predecessor saw, so a hash stays near `per` fields and Redis keeps it
-- in its compact listpack encoding; a segment that fills early opens the next one, larger.
--
-- KEYS[1]  the segment table: segment id -> "start count n"
-- ARGV     window_ms, span_ms, per, key base, legacy (1: also read the previous build's keys),
--          then per event: fingerprint (16 bytes), owner tag, [legacy key, entry id]
-- Returns per event 1 (first sighting, or its owner read again) or 0 (a duplicate).
local window, span, per = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local base, legacy = ARGV[4], ARGV[5] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local segs, cur = {}, nil
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local s, c, n = string.match(raw[i + 1], '^(%d+) (%d+) (%d+)$')
  local seg = {id = tonumber(raw[i]), start = tonumber(s), count = tonumber(c), n = tonumber(n),
    prefix = base .. raw[i] .. ':', keys = {}}
  if seg.start + span + window <= now then
    redis.call('HDEL', KEYS[1], raw[i])
  else
    segs[#segs + 1] = seg
    if not cur or seg.id > cur.id then cur = seg end
  end
end

-- With no predecessor to size it from, a segment starts at 16 hashes (about 1,000 ids): a
-- quiet deployment pays for a few more keys, a busy one for one probe less per id until
-- this first segment expires.
local function open(prev)
  local seg = {id = now, start = now, count = 0, n = 16, dirty = true}
  if prev then
    seg.id = prev.id + 1
    -- The rate the last segment saw, over a whole span; one that filled early may have seen
    -- only a burst, so it grows at most sixteenfold (a sparse segment wastes memory per key).
    -- Not less: each segment open is one probe more for every id of the next window, and
    -- from the first segment a rising rate reaches a million ids in four, not eight.
    local elapsed = math.max(now - prev.start, 1)
    local n = math.ceil(prev.count * span / elapsed / per)
    if elapsed < span then n = math.min(n, prev.n * 16) end
    seg.n = math.max(1, math.min(n, 1048576))
  end
  seg.prefix, seg.keys = base .. string.format('%d', seg.id) .. ':', {}
  segs[#segs + 1] = seg
  return seg
end

-- The hash of `seg` that fingerprint hash `h` lives in. Names are made once per call: Lua
-- turns a number into a string with printf's %.14g, a fifth of Redis's CPU at full speed
-- when every probe named its key afresh.
local function key_of(seg, h)
  local b = h % seg.n
  local key = seg.keys[b]
  if not key then
    key = seg.prefix .. string.format('%d', b)
    seg.keys[b] = key
  end
  return key
end

local function full(seg)
  return now >= seg.start + span or seg.count >= seg.n * per
end

if not cur or full(cur) then cur = open(cur) end

local call = redis.call

-- The owner `seg` remembers for fingerprint `fp` (hash `h`): 1 if it is `tag`, 0 if another,
-- nil if `seg` has not seen it.
local function probe(seg, h, fp, tag)
  local owner = call('HGET', key_of(seg, h), fp)
  if owner then return owner == tag and 1 or 0 end
end

-- The segment being written is probed by the write itself (HSETNX), not by an HGET before it:
-- one command fewer for each new id (its hash is still scanned twice: Redis 7.0's HSETNX looks
-- the field up, then sets it). While the previous layout's keys are still read (`legacy`), it
-- is probed with HGET like the others, before those keys, in the order the check has always had.
local stride = legacy and 4 or 2
local out = {}
for i = 6, #ARGV, stride do
  local fp, tag = ARGV[i], ARGV[i + 1]
  local b1, b2, b3, b4 = string.byte(fp, 1, 4)
  local h = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  local seen
  for j = 1, #segs do
    local seg = segs[j]
    if legacy or seg ~= cur then
      seen = probe(seg, h, fp, tag)
      if seen then break end
    end
  end
  if not seen and legacy then
    local owner = call('GET', ARGV[i + 2])
    if owner then seen = owner == ARGV[i + 3] and 1 or 0 end
  end
  if not seen and full(cur) then
    local last = cur
    cur = open(cur)
    if not legacy then seen = probe(last, h, fp, tag) end
  end
  if not seen then
    local key = key_of(cur, h)
    if call('HSETNX', key, fp, tag) == 1 then
      -- Its first field: the hash is new (each write of an expiry is replicated, so only once).
      if call('HLEN', key) == 1 then
        call('PEXPIREAT', key, cur.start + span + window)
      end
      cur.count = cur.count + 1
      cur.dirty = true
      seen = 1
    else
      seen = probe(cur, h, fp, tag)
    end
  end
  out[#out + 1] = seen
end

-- Only the segments this call opened or added to: the others' records are unchanged.
for _, seg in ipairs(segs) do
  if seg.dirty then
    call('HSET', KEYS[1], seg.id, seg.start .. ' ' .. seg.count .. ' ' .. seg.n)
  end
end
return out
