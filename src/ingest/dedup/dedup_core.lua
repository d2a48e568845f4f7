-- The duplicate check's segments, shared by dedup.lua (a check of entries already read) and
-- read_checked.lua (a read and its check in one call). See ingest/dedup.rs.
-- Ids are remembered in segments: a segment is `n` small hashes (fingerprint -> owner tag),
-- filled for at most `span` ms and kept until `start + span + window`. Each new segment sizes
-- `n` from the rate its predecessor saw, so a hash stays near `per` fields and Redis keeps it
-- in its compact listpack encoding; a segment that fills early opens the next one, larger.
-- A segment table maps segment id -> "start count n".
local call = redis.call

local function now_ms()
  local t = call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The segments of `table_key` still within their window (expired ones leave the table) and
-- the newest of them, the one being filled.
local function load_segments(table_key, base, span, window, now)
  local segs, cur = {}, nil
  local raw = call('HGETALL', table_key)
  for i = 1, #raw, 2 do
    local s, c, n = string.match(raw[i + 1], '^(%d+) (%d+) (%d+)$')
    local seg = {id = tonumber(raw[i]), start = tonumber(s), count = tonumber(c), n = tonumber(n),
      prefix = base .. raw[i] .. ':', keys = {}}
    if seg.start + span + window <= now then
      call('HDEL', table_key, raw[i])
    else
      segs[#segs + 1] = seg
      if not cur or seg.id > cur.id then cur = seg end
    end
  end
  return segs, cur
end

-- A number below 100 in decimal, with (TWO) and without (ONE) a leading zero: what a hash's
-- name is spelt from. Lua's number-to-string and string.format are printf, about 1,400 of
-- Redis's instructions a name, where these lookups took 4 % off the check's instructions
-- (BENCHMARKS, issue 16's twenty-second slice).
local ONE = {'0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99'}
local TWO = {'00','01','02','03','04','05','06','07','08','09','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99'}

-- The hash of `seg` that fingerprint hash `h` lives in: `<prefix><h mod n>` in plain digits.
-- Names are kept for the call, for the hashes a call uses twice.
local function key_of(seg, h)
  local b = h % seg.n
  local key = seg.keys[b]
  if not key then
    if b < 100 then
      key = seg.prefix .. ONE[b + 1]
    else
      local lo = b % 100
      local hi = (b - lo) / 100
      if hi < 100 then
        key = seg.prefix .. ONE[hi + 1] .. TWO[lo + 1]
      else
        local mid = hi % 100
        local top = (hi - mid) / 100
        if top < 100 then
          key = seg.prefix .. ONE[top + 1] .. TWO[mid + 1] .. TWO[lo + 1]
        else
          key = seg.prefix .. string.format('%d', b)
        end
      end
    end
    seg.keys[b] = key
  end
  return key
end

-- The first four bytes of a fingerprint as a number: which hash of a segment holds it.
local function hash_of(fp)
  local b1, b2, b3, b4 = string.byte(fp, 1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

-- The owner `seg` remembers for fingerprint `fp` (hash `h`): 1 if it is `tag`, 0 if another,
-- nil if `seg` has not seen it.
local function probe(seg, h, fp, tag)
  local owner = call('HGET', key_of(seg, h), fp)
  if owner then return owner == tag and 1 or 0 end
end

-- The ids the segments of `table_key` remember, for entries to be checked against and claimed
-- in (`claim`), or only checked against (`seen`: an earlier layout's, until it expires).
local function segments(table_key, base, window, span, per, now)
  local self = {}
  local segs, cur = load_segments(table_key, base, span, window, now)

  -- With no predecessor to size it from, a segment starts at 256 hashes (about 16,000 ids):
  -- a quiet deployment's first ids take up to 256 keys instead of 16 (~30 KB more, for 30 h);
  -- a busy one has one segment fewer in its first 30 h, so one probe fewer for each new id.
  local function open(prev)
    local seg = {id = now, start = now, count = 0, n = 256, dirty = true}
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

  local function full(seg)
    return now >= seg.start + span or seg.count >= seg.n * per
  end

  -- Whether any segment remembers `fp` (1: as `tag`'s, 0: as another's; nil: none).
  function self.seen(fp, tag)
    local h = hash_of(fp)
    for j = 1, #segs do
      local seen = probe(segs[j], h, fp, tag)
      if seen then return seen end
    end
  end

  function self.empty() return #segs == 0 end

  -- Claims `fp` for `tag` in the segment being filled; answers 1
  -- if it was not there, else whether it is `tag`'s.
  local function write(h, fp, tag)
    local key = key_of(cur, h)
    if call('HSETNX', key, fp, tag) == 1 then
      -- Its first field: the hash is new (each write of an expiry is replicated, so only once).
      if call('HLEN', key) == 1 then
        call('PEXPIREAT', key, cur.start + span + window)
      end
      cur.count = cur.count + 1
      cur.dirty = true
      return 1
    end
    return probe(cur, h, fp, tag)
  end

  -- Checks `fp` against every segment and, unless one remembers it, claims it for `tag` in
  -- the segment being filled; `also` (if given) is asked first whether another record holds
  -- it. Answers 1 (a first sighting, or `tag` is its owner) or 0 (a duplicate).
  -- The segment being filled is probed by the write itself (HSETNX), not by an HGET before
  -- it: one command fewer for each new id.
  -- Removes the claims of `fp` as `tag`'s that older segments than `newest` hold: claims
  -- that lost (see `settle` below).
  local function take_back(h, fp, tag, newest)
    for j = 1, #segs do
      local seg = segs[j]
      if seg ~= newest then
        local key = key_of(seg, h)
        if call('HGET', key, fp) == tag then call('HDEL', key, fp) end
      end
    end
  end

  -- `settle`: the segment being filled decides, then the newest older one that holds `fp`.
  -- webhookd's plain commands (plain.rs) write an id only where no older segment held it
  -- when they looked, but a replica whose view was a moment old may write it to a segment
  -- after another replica opened a newer one (the write is then unverified, and settled
  -- here). So an id held as `tag`'s in an older segment only is claimed in the segment being
  -- filled too: a replica that looked in the older ones before that write, and is about to
  -- write the newest, then finds it taken. An id a newer segment holds as another's is that
  -- one's, and the losing claims of `tag`'s are taken back, so that an earlier build, which
  -- looks in the segments in any order, finds only the one that counts.
  function self.claim(fp, tag, also, settle)
    local h = hash_of(fp)
    local seen
    if settle then
      -- A full one is about to be followed: it is an older one then.
      local newest = cur and not full(cur) and cur
      if newest then
        seen = probe(newest, h, fp, tag)
        if seen == 1 then return 1 end
      end
      if not seen then
        local order = {}
        for j = 1, #segs do
          if segs[j] ~= newest then order[#order + 1] = segs[j] end
        end
        table.sort(order, function(a, b) return a.id > b.id end)
        for _, seg in ipairs(order) do
          seen = probe(seg, h, fp, tag)
          if seen then break end
        end
        if not seen and also then seen = also() end
      end
      if seen == 0 then
        take_back(h, fp, tag, newest)
        return 0
      end
      if not cur or full(cur) then cur = open(cur) end
      return write(h, fp, tag)
    end
    for j = 1, #segs do
      local seg = segs[j]
      if seg ~= cur then
        seen = probe(seg, h, fp, tag)
        if seen then return seen end
      end
    end
    if not cur or full(cur) then
      local last = cur
      cur = open(cur)
      if last then
        seen = probe(last, h, fp, tag)
        if seen then return seen end
      end
    end
    if also then
      seen = also()
      if seen then return seen end
    end
    return write(h, fp, tag)
  end

  -- Writes back the records of the segments this call opened or added to.
  function self.save()
    for _, seg in ipairs(segs) do
      if seg.dirty then
        call('HSET', table_key, seg.id, seg.start .. ' ' .. seg.count .. ' ' .. seg.n)
      end
    end
  end

  return self
end
