"""Server-side Lua: each script touches one chain's keys only (one hash tag, one slot).

Keys under `<space>` = `<prefix>:{<tag>}`:
    :r:<resp>   hash  p (previous id), s (status), r (response, msgpack, output left out),
                      o (output items), i (this turn's input items), k (indexed item ids,
                      newline-separated), b ("1" for background), m (the model's name)
    :i:<item>   string, one item with its response's model (msgpack): what `item_reference` resolves
    :e:<resp>   stream of events, entry id 0-(sequence_number+1), fields t (type) d (JSON)
    :c:<resp>   cancel flag of a background response
    :o:<resp>   owner lease of a background response (short PX, renewed by the owner)
The record key is always KEYS[1]; the other names are built from ARGV[1] (the space),
which is legal in a cluster because they share KEYS[1]'s hash tag.
"""

from __future__ import annotations

from gateway.store.conversation_scripts import APPEND_FUNCTION

__all__ = ["APPEND", "BEGIN", "CANCEL", "CHAIN", "DELETE", "EVICT", "FINISH", "HEARTBEAT", "REAP"]

_PRELUDE = r"""
local TERMINAL = {completed = true, incomplete = true, failed = true, cancelled = true}

local function top_of(stream)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if last[1] then return tonumber(string.match(last[1][1], '%-(%d+)$')) end
  return 0
end

-- ARGV[from..] holds (sequence_number, type, data) triples; a retried call never duplicates.
local function append(stream, from, ttl)
  if from > #ARGV then return end
  local top = top_of(stream)
  for j = from, #ARGV, 3 do
    local id = tonumber(ARGV[j]) + 1
    if id > top then
      redis.call('XADD', stream, '0-' .. id, 't', ARGV[j + 1], 'd', ARGV[j + 2])
      top = id
    end
  end
  redis.call('PEXPIRE', stream, ttl)
end
"""

# ARGV: space, id, ttl_ms, prev, status, response, input, item_ids, background, lease_ms, model,
#       conversation ('' for none), the conversation's version the turn was built on, (item_id, item)*
# Returns 1 (written), 0 (exists already), or why a turn cannot start in its conversation:
# 'conversation_missing', 'conversation_changed' (items were added since it was read), 'conversation_locked'.
BEGIN = _PRELUDE + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[12] ~= '' then
  local version = redis.call('HGET', ARGV[1] .. ':v:' .. ARGV[12], 'n')
  if not version then return 'conversation_missing' end
  if version ~= ARGV[13] then return 'conversation_changed' end
  if not redis.call('SET', ARGV[1] .. ':vl:' .. ARGV[12], ARGV[2], 'NX', 'PX', ARGV[10]) then
    return 'conversation_locked'
  end
end
redis.call('HSET', KEYS[1], 'p', ARGV[4], 's', ARGV[5], 'r', ARGV[6], 'o', '', 'i', ARGV[7],
           'k', ARGV[8], 'b', ARGV[9], 'm', ARGV[11], 'v', ARGV[12])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
for j = 14, #ARGV, 2 do
  redis.call('SET', ARGV[1] .. ':i:' .. ARGV[j], ARGV[j + 1], 'PX', ARGV[3])
end
if tonumber(ARGV[10]) > 0 then
  redis.call('SET', ARGV[1] .. ':o:' .. ARGV[2], '1', 'PX', ARGV[10])
end
return 1
"""

# ARGV: space, id, ttl_ms, status, response, output, new_item_ids, n, (item_id, item)*n,
#       m, (conversation item_id, item)*m, (seq, type, data)*
# The first terminal status wins, except that the same status may be written again
# (the owner adds the partial output to a response the cancel endpoint already ended).
# A turn in a conversation appends its items to it when it completes (or is incomplete), once,
# and releases the conversation's turn lock whatever its status.
FINISH = _PRELUDE + APPEND_FUNCTION + r"""
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return {'missing'} end
if TERMINAL[cur] and cur ~= ARGV[4] then return {'conflict', cur} end
redis.call('HSET', KEYS[1], 's', ARGV[4], 'r', ARGV[5], 'o', ARGV[6])
if ARGV[7] ~= '' then
  local k = redis.call('HGET', KEYS[1], 'k')
  if k and k ~= '' then k = k .. '\n' .. ARGV[7] else k = ARGV[7] end
  redis.call('HSET', KEYS[1], 'k', k)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local n = tonumber(ARGV[8])
for j = 9, 8 + 2 * n, 2 do
  redis.call('SET', ARGV[1] .. ':i:' .. ARGV[j], ARGV[j + 1], 'PX', ARGV[3])
end
local at = 9 + 2 * n
local m = tonumber(ARGV[at])
local conversation = redis.call('HGET', KEYS[1], 'v')
if conversation and conversation ~= '' then
  local ends = ARGV[4] == 'completed' or ARGV[4] == 'incomplete'
  if ends and m > 0 and redis.call('HGET', KEYS[1], 'va') ~= '1'
      and redis.call('EXISTS', ARGV[1] .. ':v:' .. conversation) == 1 then
    conversation_append(ARGV[1], conversation, at + 1, at + 2 * m, ARGV[3])
    redis.call('HSET', KEYS[1], 'va', '1')
  end
  local lock = ARGV[1] .. ':vl:' .. conversation
  if redis.call('GET', lock) == ARGV[2] then redis.call('DEL', lock) end
end
append(ARGV[1] .. ':e:' .. ARGV[2], at + 1 + 2 * m, ARGV[3])
redis.call('DEL', ARGV[1] .. ':o:' .. ARGV[2])
return {'ok'}
"""

# ARGV: space, start_id, max_depth, ttl_ms. Returns {'ok', (status, input, output, model, response)*}
# newest first, or {'missing', id, depth} / {'cycle', id} / {'depth', id}. `response` is sent only for
# records written before `m` (the model) was stored, so the model can still be read from it.
# Walking a chain renews the TTL of turns past half their life, so a chain in use never
# loses its beginning, and a chain walked often is not rewritten on every turn.
CHAIN = _PRELUDE + r"""
local space, id, max, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local half = tonumber(ttl) / 2
local out, seen, depth = {'ok'}, {}, 0
while id ~= '' do
  if seen[id] then return {'cycle', id} end
  if depth == max then return {'depth', id} end
  seen[id] = true
  local key = space .. ':r:' .. id
  local rec = redis.call('HMGET', key, 'p', 's', 'i', 'o', 'k', 'm')
  if not rec[2] then return {'missing', id, tostring(depth)} end
  depth = depth + 1
  out[#out + 1] = rec[2]
  out[#out + 1] = rec[3] or ''
  out[#out + 1] = rec[4] or ''
  out[#out + 1] = rec[6] or ''
  out[#out + 1] = rec[6] and '' or (redis.call('HGET', key, 'r') or '')
  if redis.call('PTTL', key) < half then
    redis.call('PEXPIRE', key, ttl)
    for item in string.gmatch(rec[5] or '', '[^\n]+') do
      redis.call('PEXPIRE', space .. ':i:' .. item, ttl)
    end
  end
  id = rec[1] or ''
end
return out
"""

# ARGV: space, id, ttl_ms, status ('' keeps it), (seq, type, data)*
APPEND = _PRELUDE + r"""
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return 'missing' end
if ARGV[4] ~= '' and not TERMINAL[cur] then redis.call('HSET', KEYS[1], 's', ARGV[4]) end
append(ARGV[1] .. ':e:' .. ARGV[2], 5, ARGV[3])
if redis.call('EXISTS', ARGV[1] .. ':c:' .. ARGV[2]) == 1 then return 'cancel' end
return 'ok'
"""

# ARGV: space, id, lease_ms
HEARTBEAT = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
redis.call('SET', ARGV[1] .. ':o:' .. ARGV[2], '1', 'PX', ARGV[3])
local conversation = redis.call('HGET', KEYS[1], 'v')
if conversation and conversation ~= '' then
  local lock = ARGV[1] .. ':vl:' .. conversation
  if redis.call('GET', lock) == ARGV[2] then redis.call('PEXPIRE', lock, ARGV[3]) end
end
if redis.call('EXISTS', ARGV[1] .. ':c:' .. ARGV[2]) == 1 then return 'cancel' end
return 'ok'
"""

# ARGV: space, id, ttl_ms. Returns {'missing'} | {'foreground'} | {'ok', status, response, output, owned}
# (owned: '1' while an owner is still running it; it adds what it generated when it sees the cancel)
CANCEL = _PRELUDE + r"""
local rec = redis.call('HMGET', KEYS[1], 's', 'b')
if not rec[1] then return {'missing'} end
if rec[2] ~= '1' then return {'foreground'} end
if not TERMINAL[rec[1]] then
  redis.call('HSET', KEYS[1], 's', 'cancelled')
  redis.call('SET', ARGV[1] .. ':c:' .. ARGV[2], '1', 'PX', ARGV[3])
end
local now = redis.call('HMGET', KEYS[1], 's', 'r', 'o')
local owned = redis.call('EXISTS', ARGV[1] .. ':o:' .. ARGV[2])
return {'ok', now[1], now[2], now[3], tostring(owned)}
"""

# ARGV: space, id. An owner still running sees its record gone and stops.
DELETE = r"""
local rec = redis.call('HMGET', KEYS[1], 's', 'k')
if not rec[1] then return 0 end
for item in string.gmatch(rec[2] or '', '[^\n]+') do
  redis.call('DEL', ARGV[1] .. ':i:' .. item)
end
redis.call('DEL', KEYS[1], ARGV[1] .. ':e:' .. ARGV[2], ARGV[1] .. ':o:' .. ARGV[2], ARGV[1] .. ':c:' .. ARGV[2])
return 1
"""

# ARGV: space, id* (KEYS[1] is the first one's record). `memory://` only, to stay under its byte bound:
# deletes these responses as DELETE does, all or none: none while one of them is still running
# (not yet in a final status, or a background owner's lease is alive). Returns {'busy', id} or {'ok', n}.
EVICT = _PRELUDE + r"""
for j = 2, #ARGV do
  local s = redis.call('HGET', ARGV[1] .. ':r:' .. ARGV[j], 's')
  if (s and not TERMINAL[s]) or redis.call('EXISTS', ARGV[1] .. ':o:' .. ARGV[j]) == 1
      or redis.call('EXISTS', ARGV[1] .. ':vl:' .. ARGV[j]) == 1 then
    return {'busy', ARGV[j]}
  end
end
local n = 0
for j = 2, #ARGV do
  local id = ARGV[j]
  n = n + redis.call('DEL', ARGV[1] .. ':v:' .. id)  -- a conversation: its hash, order and items
  redis.call('DEL', ARGV[1] .. ':vo:' .. id, ARGV[1] .. ':vi:' .. id)
  local key = ARGV[1] .. ':r:' .. id
  for item in string.gmatch(redis.call('HGET', key, 'k') or '', '[^\n]+') do
    redis.call('DEL', ARGV[1] .. ':i:' .. item)
  end
  n = n + redis.call('DEL', key)
  redis.call('DEL', ARGV[1] .. ':e:' .. id, ARGV[1] .. ':c:' .. id)
end
return {'ok', n}
"""

# ARGV: space, id, ttl_ms, error-event JSON with one %d (its sequence number).
# A response whose owner lease lapsed (the gateway running it died) is ended as failed, so no
# poller, follower or follow-up turn waits for it forever; a background one also gets a terminal
# event in its log. Records written before foreground responses had a lease have none: they are
# reaped too, which is what their owner's long-gone process would want.
REAP = _PRELUDE + r"""
local rec = redis.call('HMGET', KEYS[1], 's', 'b')
if not rec[1] then return 'missing' end
if TERMINAL[rec[1]] then return rec[1] end
if redis.call('EXISTS', ARGV[1] .. ':o:' .. ARGV[2]) == 1 then return rec[1] end
redis.call('HSET', KEYS[1], 's', 'failed')
local conversation = redis.call('HGET', KEYS[1], 'v')
if conversation and conversation ~= '' and redis.call('GET', ARGV[1] .. ':vl:' .. conversation) == ARGV[2] then
  redis.call('DEL', ARGV[1] .. ':vl:' .. conversation)
end
if rec[2] == '1' then
  local stream = ARGV[1] .. ':e:' .. ARGV[2]
  local top = top_of(stream)
  redis.call('XADD', stream, '0-' .. (top + 1), 't', 'error', 'd', string.format(ARGV[4], top))
  redis.call('PEXPIRE', stream, ARGV[3])
end
return 'reaped'
"""
