"""The Redis backend's Lua scripts: each multi-key step of one stream, atomic on its hash slot.

Every script gets `ARGV[1]`, the stream's key base (`pk:{stream}`), and builds the stream's
keys from it; `KEYS[1]` is one of them so a Redis Cluster routes the call to the node holding
the stream. Numbers that must compare exactly (starts, ends, a clip's range) arrive as strings
Python wrote (`repr`), which `tonumber` reads back to the same double; scripts never encode a
float into a document (Redis' cjson keeps 14 digits), they only copy Python's strings.

Key layout under `B = pk:{stream}` (see redis.py's docstring for the global keys):
  B:info            hash   json (StreamInfo), dvr (seconds)
  B:rends           list   rendition names, in order of arrival
  B:r:REND          hash   init_id, init_data, init_changed, next_seq, last_end_dts,
                           last_digest, playlist, demux, dvr_size, dvr_dur, init_source
                           and init_note (a revised init: what was pushed, and why)
  B:ring:REND       zset   the DVR: seq -> seq
  B:td:REND         hash   ceil(duration) -> segments in the DVR (EXT-X-TARGETDURATION)
  B:seg:REND:SEQ    hash   ref (json SegmentRef), start, end, dur, size, cost, init, td,
                           pins (clips holding it), dvr (1 while in the DVR)
  B:data:REND:SEQ   string the segment's bytes
  B:tables:REND:SEQ string (planned) its prepared sample tables
  B:held            set    REND:SEQ of pinned segments the DVR let go of
  B:acct            hash   dvr_bytes, clip_only, pinned, dvr_segments, evicted, expired,
                           clips, growing, gseq, cseq, seq:REND (next seq kept across a
                           delete)
  B:clips           zset   clip id -> order cut
  B:growing         zset   clip id -> order cut (the clips a new segment may feed)
  B:clip:ID         hash   head (json), state, completed_at, note, video_id, vod_error,
                           rs, re, exp (its range and expiration), srcs, n, last:N
  B:clip:ID:segs:N  list   rendition N's segment refs (json), in order
  B:clip:ID:pins    set    REND:SEQ of the segments it pins
"""

from __future__ import annotations

_PRELUDE = r"""
local B = ARGV[1]
local function key(...) return B .. ':' .. table.concat({...}, ':') end
local ACCT = key('acct')
local END_EPSILON = 0.001
local function num(v) return tonumber(v) or 0 end
local function incr(field, by) redis.call('HINCRBY', ACCT, field, by) end
local function split(s)
  local out = {}
  for p in string.gmatch(s or '', '[^,]+') do table.insert(out, p) end
  return out
end
local function split_id(id) return string.match(id, '^(.*):(%d+)$') end
local function rends() return redis.call('LRANGE', key('rends'), 0, -1) end
local function seg_field(rend, seq, f) return redis.call('HGET', key('seg', rend, seq), f) end
local function ring_first(rend) return redis.call('ZRANGE', key('ring', rend), 0, 0)[1] end
local function last_end(rend)
  local m = redis.call('ZRANGE', key('ring', rend), -1, -1)[1]
  if m == nil then return nil end
  return tonumber(seg_field(rend, m, 'end'))
end
local function push_all(list_key, items)
  for i = 1, #items, 1000 do
    redis.call('RPUSH', list_key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- A segment no clip holds and no DVR lists: its keys go.
local function forget(rend, seq)
  redis.call('DEL', key('seg', rend, seq), key('data', rend, seq), key('tables', rend, seq))
  redis.call('SREM', key('held'), rend .. ':' .. seq)
end

-- The DVR lets go of a segment: it stays (out of the DVR) while a clip pins it.
local function evict(rend, seq)
  local r, ring = key('r', rend), key('ring', rend)
  redis.call('ZREM', ring, seq)
  local s = key('seg', rend, seq)
  local f = redis.call('HMGET', s, 'cost', 'pins', 'size', 'dur', 'td')
  local cost, pins = num(f[1]), num(f[2])
  incr('dvr_bytes', -cost)
  incr('dvr_segments', -1)
  incr('evicted', 1)
  redis.call('HINCRBY', r, 'dvr_size', -num(f[3]))
  if redis.call('ZCARD', ring) == 0 then
    redis.call('HSET', r, 'dvr_dur', '0', 'dvr_size', '0')
  elseif f[4] then
    redis.call('HINCRBYFLOAT', r, 'dvr_dur', -tonumber(f[4]))
  end
  if f[5] and redis.call('HINCRBY', key('td', rend), f[5], -1) <= 0 then
    redis.call('HDEL', key('td', rend), f[5])
  end
  if pins > 0 then
    incr('clip_only', cost)
    redis.call('HSET', s, 'dvr', '0')
    redis.call('SADD', key('held'), rend .. ':' .. seq)
  else
    forget(rend, seq)
  end
  return cost, pins
end

-- Segments that ended more than dvr_duration before `now` leave the DVR.
local function sweep(now)
  local dvr = tonumber(redis.call('HGET', key('info'), 'dvr'))
  if dvr == nil then return end
  local horizon = now - dvr
  for _, rend in ipairs(rends()) do
    while true do
      local seq = ring_first(rend)
      if seq == nil then break end
      local e = tonumber(seg_field(rend, seq, 'end'))
      if e ~= nil and e >= horizon then break end
      evict(rend, seq)
    end
  end
end

-- The DVR segment with the earliest start, over the stream's renditions.
local function oldest()
  local best_rend, best_seq, best_start = nil, nil, nil
  for _, rend in ipairs(rends()) do
    local seq = ring_first(rend)
    if seq ~= nil then
      local st = tonumber(seg_field(rend, seq, 'start')) or -math.huge
      if best_start == nil or st < best_start then
        best_rend, best_seq, best_start = rend, seq, st
      end
    end
  end
  return best_rend, best_seq
end

-- A clip holds a segment: counted once in `pinned`, kept (TTL raised, never lowered) as
-- long as the clip.
local function pin(rend, seq, ttl, pins_key)
  local s = key('seg', rend, seq)
  if redis.call('HINCRBY', s, 'pins', 1) == 1 then incr('pinned', num(seg_field(rend, seq, 'cost'))) end
  redis.call('SADD', pins_key, rend .. ':' .. seq)
  redis.call('PEXPIRE', s, ttl, 'GT')
  redis.call('PEXPIRE', key('data', rend, seq), ttl, 'GT')
  redis.call('PEXPIRE', key('tables', rend, seq), ttl, 'GT')
end

-- Bytes a growing clip will still pin: each source's DVR bit rate until the clip's end.
local function future(re, srcs)
  local total = 0
  for _, src in ipairs(srcs) do
    local r = key('r', src)
    local le = last_end(src)
    if le ~= nil and le < re then
      local f = redis.call('HMGET', r, 'dvr_size', 'dvr_dur')
      local size, dur = num(f[1]), num(f[2])
      local bitrate = 0
      if dur > 0 then bitrate = size * 8 / dur end
      total = total + math.floor(bitrate / 8 * (re - le))
    end
  end
  return total
end

local function reserved()
  local total = 0
  for _, cid in ipairs(redis.call('ZRANGE', key('growing'), 0, -1)) do
    local f = redis.call('HMGET', key('clip', cid), 're', 'srcs', 'state')
    if f[3] == 'growing' then total = total + future(tonumber(f[1]), split(f[2])) end
  end
  return total
end

local function clip_keys(cid)
  local ck = key('clip', cid)
  local out = {ck, key('clip', cid, 'pins'), key('clip', cid, 'media')}
  local n = num(redis.call('HGET', ck, 'n'))
  for i = 0, n - 1 do table.insert(out, key('clip', cid, 'segs', i)) end
  return out
end

-- The clip's manifest: its hash, then each rendition's refs.
local function read_clip(cid)
  local ck = key('clip', cid)
  local fields = redis.call('HGETALL', ck)
  if #fields == 0 then return false end
  local out = {fields}
  local n = num(redis.call('HGET', ck, 'n'))
  for i = 0, n - 1 do
    table.insert(out, redis.call('LRANGE', key('clip', cid, 'segs', i), 0, -1))
  end
  return out
end

local function complete(cid, now, note)
  local ck = key('clip', cid)
  redis.call('HSET', ck, 'state', 'complete', 'completed_at', now)
  if note ~= '' then redis.call('HSET', ck, 'note', note) else redis.call('HDEL', ck, 'note') end
  if redis.call('ZREM', key('growing'), cid) == 1 then incr('growing', -1) end
end
"""


def _script(body: str) -> str:
    return _PRELUDE + body


CREATE_STREAM = _script(r"""
if redis.call('EXISTS', key('info')) == 1 then return 'exists' end
redis.call('HSET', key('info'), 'json', ARGV[2], 'dvr', ARGV[3])
return 'ok'
""")

DELETE_STREAM = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
for _, rend in ipairs(rends()) do
  while true do
    local seq = ring_first(rend)
    if seq == nil then break end
    evict(rend, seq)
  end
  local r = key('r', rend)
  redis.call('HSET', ACCT, 'seq:' .. rend, num(redis.call('HGET', r, 'next_seq')))
  redis.call('DEL', r, key('ring', rend), key('td', rend))
end
redis.call('DEL', key('rends'), key('info'))
return 'ok'
""")

# ARGV: base, rendition, max_renditions -> 'nostream' | 'limit' | 'ok'
_ENSURE_RENDITION = r"""
local function ensure_rendition(rend, max)
  if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
  local r = key('r', rend)
  if redis.call('EXISTS', r) == 1 then return 'ok' end
  if redis.call('LLEN', key('rends')) >= max then return 'limit' end
  redis.call('RPUSH', key('rends'), rend)
  redis.call('HSET', r, 'next_seq', num(redis.call('HGET', ACCT, 'seq:' .. rend)),
    'init_changed', '0', 'dvr_size', '0', 'dvr_dur', '0')
  return 'ok'
end
"""

# ARGV: base, rendition, init_id, init bytes, max renditions, budget, others_held,
#       others_unpinned
# -> 'same' | 'changed' | 'nostream' | 'limit' | 'budget' | 'room:<need>'
PUT_INIT = _script(
    _ENSURE_RENDITION
    + r"""
local made = ensure_rendition(ARGV[2], tonumber(ARGV[5]))
if made ~= 'ok' then return made end
local r = key('r', ARGV[2])
redis.call('HSET', r, 'init_resent', '1')
local current, source = unpack(redis.call('HMGET', r, 'init_id', 'init_source'))
if current == ARGV[3] or source == ARGV[3] then return 'same' end
-- Each rendition keeps its init's bytes: counted like segments, and like a segment a new one
-- makes room by rolling the DVR on (300 renditions of a 1 MiB init are 300 MiB).
local more = string.len(ARGV[4]) - redis.call('HSTRLEN', r, 'init_data')
local a = redis.call('HMGET', ACCT, 'dvr_bytes', 'clip_only', 'pinned', 'init_bytes')
local dvr, co, pinned, inits = num(a[1]), num(a[2]), num(a[3]), num(a[4])
local need = dvr + co + inits + tonumber(ARGV[7]) + more - tonumber(ARGV[6])
if need > 0 then
  if dvr - (pinned - co) + tonumber(ARGV[8]) < need then return 'budget' end
  while need > 0 do
    local rend, seq = oldest()
    if rend == nil then return 'room:' .. tostring(need) end
    local c, pins = evict(rend, seq)
    if pins == 0 then need = need - c end
  end
end
if current then redis.call('HSET', r, 'init_changed', '1') end
incr('init_bytes', more)
redis.call('HSET', r, 'init_id', ARGV[3], 'init_data', ARGV[4])
redis.call('HDEL', r, 'init_source', 'init_note')
return 'changed'
"""
)

# ARGV: base, rendition, current init id, new id, new data, source id, note ('' for none),
# changed (0/1) -> 'nostream' | 'moved' (current is not the rendition's init) | 'ok'
REVISE_INIT = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
local r = key('r', ARGV[2])
if redis.call('HGET', r, 'init_id') ~= ARGV[3] then return 'moved' end
if ARGV[4] ~= ARGV[3] then
  incr('init_bytes', string.len(ARGV[5]) - redis.call('HSTRLEN', r, 'init_data'))
  redis.call('HSET', r, 'init_id', ARGV[4], 'init_data', ARGV[5])
end
if ARGV[6] ~= '' then redis.call('HSET', r, 'init_source', ARGV[6])
else redis.call('HDEL', r, 'init_source') end
if ARGV[7] ~= '' then redis.call('HSET', r, 'init_note', ARGV[7])
else redis.call('HDEL', r, 'init_note') end
if ARGV[8] == '1' then redis.call('HSET', r, 'init_changed', '1') end
return 'ok'
""")

SET_PLAYLIST = _script(
    _ENSURE_RENDITION
    + r"""
local made = ensure_rendition(ARGV[2], tonumber(ARGV[4]))
if made ~= 'ok' then return made end
redis.call('HSET', key('r', ARGV[2]), 'playlist', ARGV[3])
return 'ok'
"""
)

SET_DEMUX = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
local r = key('r', ARGV[2])
if redis.call('EXISTS', r) == 1 then redis.call('HSET', r, 'demux', ARGV[3]) end
return 'ok'
""")

# ARGV: base, rendition, seq, ref, start, end
RETIME = _script(r"""
local s = key('seg', ARGV[2], ARGV[3])
if redis.call('EXISTS', s) == 1 then redis.call('HSET', s, 'ref', ARGV[4], 'start', ARGV[5], 'end', ARGV[6]) end
return 'ok'
""")

RENDITION = _script(r"""
local r = key('r', ARGV[2])
if redis.call('EXISTS', r) == 0 then return false end
local f = redis.call('HMGET', r, 'init_id', 'init_changed', 'next_seq', 'last_end_dts',
  'last_digest', 'playlist', 'demux', 'init_resent', 'last_arrival', 'shift', 'init_source',
  'init_note')
local refs = {}
for _, seq in ipairs(redis.call('ZRANGE', key('ring', ARGV[2]), -8, -1)) do
  table.insert(refs, seg_field(ARGV[2], seq, 'ref'))
end
return {f, refs}
""")

LADDER = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
local out = {}
for _, rend in ipairs(rends()) do
  local f = redis.call('HMGET', key('r', rend), 'init_id', 'dvr_size', 'dvr_dur', 'init_note')
  local ring = key('ring', rend)
  local count = redis.call('ZCARD', ring)
  if f[1] and count > 0 then
    local td = 1
    local buckets = redis.call('HGETALL', key('td', rend))
    for i = 1, #buckets, 2 do
      if tonumber(buckets[i + 1]) > 0 and tonumber(buckets[i]) > td then td = tonumber(buckets[i]) end
    end
    local recent = {}
    for _, seq in ipairs(redis.call('ZRANGE', ring, -5, -1)) do
      table.insert(recent, seg_field(rend, seq, 'ref'))
    end
    local first = ring_first(rend)
    table.insert(out, {rend, f[1], f[2] or '0', f[3] or '0', count,
      seg_field(rend, first, 'start'), td, recent, f[4] or ''})
  end
end
return out
""")

# ARGV: base, rendition, ranged (0/1), lo, hi. bisect_right on the ring's ends, as the
# in-memory store does on its deque.
DVR_SEGMENTS = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return 'nostream' end
local rend = ARGV[2]
local ring = key('ring', rend)
local seqs
if ARGV[3] == '0' then
  seqs = redis.call('ZRANGE', ring, 0, -1)
else
  local lo, hi = tonumber(ARGV[4]), tonumber(ARGV[5])
  local a, b = 0, redis.call('ZCARD', ring)
  while a < b do
    local mid = math.floor((a + b) / 2)
    local seq = redis.call('ZRANGE', ring, mid, mid)[1]
    if lo < tonumber(seg_field(rend, seq, 'end')) then b = mid else a = mid + 1 end
  end
  seqs = {}
  local i = a
  while true do
    local seq = redis.call('ZRANGE', ring, i, i)[1]
    if seq == nil or tonumber(seg_field(rend, seq, 'start')) >= hi then break end
    table.insert(seqs, seq)
    i = i + 1
  end
end
local out = {}
for _, seq in ipairs(seqs) do table.insert(out, seg_field(rend, seq, 'ref')) end
return out
""")

SWEEP = _script(r"""
sweep(tonumber(ARGV[2]))
return 'ok'
""")

# ARGV: base, now, budget, others_held, others_unpinned, rendition, seq, ref, start, end,
#       duration, size, cost, init_id, td bucket, end_dts, digest, data, ttl_ms, grace
# -> {'ok', completed clip ids...} | {'nostream'} | {'budget', pinned} | {'room', need}
ADD_SEGMENT = _script(r"""
if redis.call('EXISTS', key('info')) == 0 then return {'nostream'} end
local now = tonumber(ARGV[2])
sweep(now)
local cost = tonumber(ARGV[13])
local a = redis.call('HMGET', ACCT, 'dvr_bytes', 'clip_only', 'pinned', 'init_bytes')
local dvr, co, pinned = num(a[1]), num(a[2]), num(a[3])
local need = dvr + co + num(a[4]) + tonumber(ARGV[4]) + cost - tonumber(ARGV[3])
if need > 0 then
  if dvr - (pinned - co) + tonumber(ARGV[5]) < need then return {'budget', tostring(pinned)} end
  while need > 0 do
    local rend, seq = oldest()
    if rend == nil then return {'room', tostring(need)} end
    local c, pins = evict(rend, seq)
    if pins == 0 then need = need - c end
  end
end
local rend, seq = ARGV[6], ARGV[7]
local st, en = tonumber(ARGV[9]), tonumber(ARGV[10])
local s = key('seg', rend, seq)
local ttl = ARGV[19]
redis.call('HSET', s, 'ref', ARGV[8], 'start', ARGV[9], 'end', ARGV[10], 'dur', ARGV[11],
  'size', ARGV[12], 'cost', ARGV[13], 'init', ARGV[14], 'td', ARGV[15], 'pins', '0', 'dvr', '1')
redis.call('PEXPIRE', s, ttl)
redis.call('SET', key('data', rend, seq), ARGV[18], 'PX', ttl)
redis.call('SET', key('tables', rend, seq), ARGV[21], 'PX', ttl)
local ring = key('ring', rend)
redis.call('ZADD', ring, seq, seq)
local r = key('r', rend)
redis.call('HSET', r, 'next_seq', tonumber(seq) + 1, 'init_changed', '0', 'init_resent', '0',
  'last_end_dts', ARGV[16], 'last_digest', ARGV[17], 'last_arrival', ARGV[2], 'shift', ARGV[22])
redis.call('HINCRBY', r, 'dvr_size', ARGV[12])
if redis.call('ZCARD', ring) == 1 then
  redis.call('HSET', r, 'dvr_dur', ARGV[11])
else
  redis.call('HINCRBYFLOAT', r, 'dvr_dur', ARGV[11])
end
redis.call('HINCRBY', key('td', rend), ARGV[15], 1)
incr('dvr_bytes', cost)
incr('dvr_segments', 1)

-- Feed the stream's growing clips, here, so whichever process ingests does it.
local grace = tonumber(ARGV[20])
local completed = {'ok'}
for _, cid in ipairs(redis.call('ZRANGE', key('growing'), 0, -1)) do
  local ck = key('clip', cid)
  local f = redis.call('HMGET', ck, 'rs', 're', 'exp', 'srcs', 'state')
  if f[5] ~= 'growing' then
    if redis.call('ZREM', key('growing'), cid) == 1 then incr('growing', -1) end
  else
    local rs, re, exp = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
    local srcs = split(f[4])
    local clip_ttl = math.max(1000, math.floor((exp + grace - now) * 1000))
    for i, src in ipairs(srcs) do
      local last = tonumber(redis.call('HGET', ck, 'last:' .. (i - 1)))
      if src == rend and st < re and en > rs and (last == nil or tonumber(seq) > last) then
        local segs, pins = key('clip', cid, 'segs', i - 1), key('clip', cid, 'pins')
        pin(rend, seq, clip_ttl, pins)
        redis.call('RPUSH', segs, ARGV[8])
        redis.call('HSET', ck, 'last:' .. (i - 1), seq)
        redis.call('PEXPIRE', segs, clip_ttl)
        redis.call('PEXPIRE', pins, clip_ttl)
      end
    end
    local short = false
    for _, src in ipairs(srcs) do
      local le = last_end(src)
      if le == nil or le < re - END_EPSILON then short = true end
    end
    if not short then
      complete(cid, ARGV[2], '')
      table.insert(completed, cid)
    end
  end
end
return completed
""")

# ARGV: base, cid, head, state, completed_at, rs, re, exp, srcs, created_at, ttl_ms,
#       max_per_stream, max_clips, others_clips, budget, others_committed, n,
#       then per rendition: count, count ids (REND:SEQ), count refs
# -> {'ok'} | {'total'} | {'per_stream'} | {'gone'} | {'budget', more, committed}
ADD_CLIP = _script(r"""
local cid = ARGV[2]
local a = redis.call('HMGET', ACCT, 'clips', 'pinned')
local own = num(a[1])
if own + tonumber(ARGV[14]) >= tonumber(ARGV[13]) then return {'total'} end
if own >= tonumber(ARGV[12]) then return {'per_stream'} end
local i = 18
local parts = {}
for n = 0, tonumber(ARGV[17]) - 1 do
  local count = tonumber(ARGV[i])
  local ids, refs = {}, {}
  for j = 1, count do ids[j] = ARGV[i + j] end
  for j = 1, count do refs[j] = ARGV[i + count + j] end
  i = i + 1 + 2 * count
  parts[n] = {ids, refs}
end
local seen, order = {}, {}
for n = 0, tonumber(ARGV[17]) - 1 do
  for _, id in ipairs(parts[n][1]) do
    if not seen[id] then seen[id] = true; table.insert(order, id) end
  end
end
local new = 0
for _, id in ipairs(order) do
  local rend, seq = split_id(id)
  local f = redis.call('HMGET', key('seg', rend, seq), 'cost', 'pins')
  if not f[1] then return {'gone'} end
  if num(f[2]) == 0 then new = new + tonumber(f[1]) end
end
local more = new
if ARGV[4] == 'growing' then more = more + future(tonumber(ARGV[7]), split(ARGV[9])) end
local committed = num(a[2]) + reserved() + tonumber(ARGV[16])
if committed + more > tonumber(ARGV[15]) then
  return {'budget', tostring(more), tostring(committed)}
end
local ttl = ARGV[11]
local ck = key('clip', cid)
for _, id in ipairs(order) do
  local rend, seq = split_id(id)
  pin(rend, seq, ttl, key('clip', cid, 'pins'))
end
redis.call('HSET', ck, 'head', ARGV[3], 'state', ARGV[4], 'rs', ARGV[6], 're', ARGV[7],
  'exp', ARGV[8], 'srcs', ARGV[9], 'n', ARGV[17])
if ARGV[5] ~= '' then redis.call('HSET', ck, 'completed_at', ARGV[5]) end
for n = 0, tonumber(ARGV[17]) - 1 do
  local ids, refs = parts[n][1], parts[n][2]
  if #refs > 0 then
    push_all(key('clip', cid, 'segs', n), refs)
    local _, seq = split_id(ids[#ids])
    redis.call('HSET', ck, 'last:' .. n, seq)
  end
end
for _, k in ipairs(clip_keys(cid)) do redis.call('PEXPIRE', k, ttl) end
redis.call('ZADD', key('clips'), redis.call('HINCRBY', ACCT, 'cseq', 1), cid)
incr('clips', 1)
if ARGV[4] == 'growing' then
  redis.call('ZADD', key('growing'), redis.call('HINCRBY', ACCT, 'gseq', 1), cid)
  incr('growing', 1)
end
return {'ok'}
""")

READ_CLIP = _script(r"""
return read_clip(ARGV[2])
""")

# The clip's manifest as it was, then unpinned and deleted: false if it is already gone.
EXPIRE_CLIP = _script(r"""
local cid = ARGV[2]
local out = read_clip(cid)
if not out then return false end
for _, id in ipairs(redis.call('SMEMBERS', key('clip', cid, 'pins'))) do
  local rend, seq = split_id(id)
  local s = key('seg', rend, seq)
  local f = redis.call('HMGET', s, 'cost', 'pins', 'dvr')
  if f[1] then
    local pins = num(f[2]) - 1
    if pins <= 0 then
      incr('pinned', -tonumber(f[1]))
      if f[3] == '0' then
        incr('clip_only', -tonumber(f[1]))
        forget(rend, seq)
      else
        redis.call('HSET', s, 'pins', '0')
      end
    else
      redis.call('HSET', s, 'pins', pins)
    end
  end
end
local made = num(redis.call('HGET', key('clip', cid), 'media'))
if made > 0 then
  incr('pinned', -made)
  incr('clip_only', -made)
end
redis.call('DEL', unpack(clip_keys(cid)))
if redis.call('ZREM', key('growing'), cid) == 1 then incr('growing', -1) end
if redis.call('ZREM', key('clips'), cid) == 1 then incr('clips', -1) end
incr('expired', 1)
return out
""")

# What a clip makes of its own (a frame-accurate clip's re-encodes), held by it alone: counted
# as clip-only and pinned, freed with it (EXPIRE_CLIP, its keys' TTL, RECONCILE).
# ARGV: base, cid, name, data, budget, others_held, others_unpinned
# -> 'ok' | 'gone' | 'budget' | 'room:<need>'
PUT_CLIP_MEDIA = _script(r"""
local ck = key('clip', ARGV[2])
local ttl = redis.call('PTTL', ck)
if ttl <= 0 then return 'gone' end
local mk = key('clip', ARGV[2], 'media')
local more = string.len(ARGV[4]) - redis.call('HSTRLEN', mk, ARGV[3])
if more > 0 then
  local a = redis.call('HMGET', ACCT, 'dvr_bytes', 'clip_only', 'pinned', 'init_bytes')
  local dvr, co, pinned = num(a[1]), num(a[2]), num(a[3])
  local need = dvr + co + num(a[4]) + tonumber(ARGV[6]) + more - tonumber(ARGV[5])
  if need > 0 then
    if dvr - (pinned - co) + tonumber(ARGV[7]) < need then return 'budget' end
    while need > 0 do
      local rend, seq = oldest()
      if rend == nil then return 'room:' .. tostring(need) end
      local c, pins = evict(rend, seq)
      if pins == 0 then need = need - c end
    end
  end
end
redis.call('HSET', mk, ARGV[3], ARGV[4])
redis.call('PEXPIRE', mk, ttl)
redis.call('HINCRBY', ck, 'media', more)
incr('pinned', more)
incr('clip_only', more)
return 'ok'
""")

# ARGV: base, cid, now, note -> 1 if it was growing and is now complete
DEADLINE = _script(r"""
if redis.call('HGET', key('clip', ARGV[2]), 'state') ~= 'growing' then return 0 end
complete(ARGV[2], ARGV[3], ARGV[4])
return 1
""")

# ARGV: base, cid, state, video_id, vod_error, states it may come from...
UPDATE_CLIP = _script(r"""
local ck = key('clip', ARGV[2])
local current = redis.call('HGET', ck, 'state')
if not current then return {'notfound'} end
local allowed = false
for i = 6, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return {'invalid', current} end
redis.call('HSET', ck, 'state', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', ck, 'video_id', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', ck, 'vod_error', ARGV[5]) end
return {'ok'}
""")

# Recount a stream's figures from what its keys hold: after every process was down while a
# clip's keys expired by TTL, the pins and counters that clip held are recomputed.
RECONCILE = _script(r"""
local counts = {}
local clips, growing, made = 0, 0, 0
for _, cid in ipairs(redis.call('ZRANGE', key('clips'), 0, -1)) do
  local ck = key('clip', cid)
  local state = redis.call('HGET', ck, 'state')
  if not state then
    redis.call('ZREM', key('clips'), cid)
    redis.call('ZREM', key('growing'), cid)
  else
    clips = clips + 1
    if state == 'growing' then growing = growing + 1 end
    made = made + num(redis.call('HGET', ck, 'media'))
    for _, id in ipairs(redis.call('SMEMBERS', key('clip', cid, 'pins'))) do
      counts[id] = (counts[id] or 0) + 1
    end
  end
end
local dvr_bytes, dvr_segments, pinned, clip_only = 0, 0, 0, 0
for _, rend in ipairs(rends()) do
  local size, dur = 0, 0
  redis.call('DEL', key('td', rend))
  for _, seq in ipairs(redis.call('ZRANGE', key('ring', rend), 0, -1)) do
    local s = key('seg', rend, seq)
    local f = redis.call('HMGET', s, 'cost', 'size', 'dur', 'td')
    local id = rend .. ':' .. seq
    if not f[1] then
      redis.call('ZREM', key('ring', rend), seq)
      redis.call('DEL', key('data', rend, seq), key('tables', rend, seq))
    else
      local c, p = tonumber(f[1]), counts[id] or 0
      redis.call('HSET', s, 'pins', p, 'dvr', '1')
      dvr_bytes = dvr_bytes + c
      dvr_segments = dvr_segments + 1
      size = size + num(f[2])
      dur = dur + num(f[3])
      redis.call('HINCRBY', key('td', rend), f[4], 1)
      if p > 0 then pinned = pinned + c end
    end
  end
  redis.call('HSET', key('r', rend), 'dvr_size', size, 'dvr_dur', dur)
end
for _, id in ipairs(redis.call('SMEMBERS', key('held'))) do
  local rend, seq = split_id(id)
  local c = tonumber(seg_field(rend, seq, 'cost'))
  local p = counts[id] or 0
  if c == nil or p == 0 then
    forget(rend, seq)
  else
    redis.call('HSET', key('seg', rend, seq), 'pins', p)
    pinned = pinned + c
    clip_only = clip_only + c
  end
end
redis.call('HSET', ACCT, 'dvr_bytes', dvr_bytes, 'dvr_segments', dvr_segments,
  'pinned', pinned + made, 'clip_only', clip_only + made, 'clips', clips, 'growing', growing)
return 'ok'
""")

# KEYS: due, leased. ARGV: now, lease_until, limit. Due timers and leases whose process died
# are leased to the caller: exactly one process handles each, and one that dies before it
# finishes leaves the timer to come round again when its lease ends.
TAKE_TIMERS = r"""
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  table.insert(out, m)
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[2], m)
  table.insert(out, m)
end
return out
"""

RESERVED = _script(r"""
return tostring(reserved())
""")

# The start of the stream's oldest DVR segment (nil if its DVR is empty).
OLDEST = _script(r"""
local rend, seq = oldest()
if rend == nil then return false end
return seg_field(rend, seq, 'start')
""")

# ARGV: base, need -> what is still needed after this stream gave up its oldest unpinned
# segments (another stream's ingest needs room under the global budget).
MAKE_ROOM = _script(r"""
local need = tonumber(ARGV[2])
while need > 0 do
  local rend, seq = oldest()
  if rend == nil then break end
  local c, pins = evict(rend, seq)
  if pins == 0 then need = need - c end
end
return tostring(need)
""")
