"""Server-side Lua for Conversations: each script touches one conversation's keys (one hash tag, one slot).

Keys under `<space>` = `<prefix>:{<tag>}` (the tag is the conversation id's; every response run in
the conversation uses it too, so a turn's final write and the conversation's append are one script):
    :v:<conv>    hash    c (created_at), m (metadata, JSON), w (the API key that created it; '' when open),
                         n (the next item's sequence number)
    :vo:<conv>   zset    item ids, scored by sequence number (the order, and cursor paging)
    :vi:<conv>   hash    item id → the item (msgpack, with its model)
    :vl:<conv>   string  the response running a turn in the conversation (PX: its owner's lease)
KEYS[1] is always the `:v:` hash; the other names are built from ARGV[1] (the space) and ARGV[2] (the id).
"""

from __future__ import annotations

__all__ = ["ADD_ITEMS", "APPEND_FUNCTION", "CREATE", "DELETE", "DELETE_ITEM", "GET_ITEM", "LIST_ITEMS", "LOAD", "UPDATE"]

# Append (item_id, blob) pairs ARGV[from..to] to conversation `id`, in order; an id already there is
# replaced in place. Renews every key of the conversation. FINISH (scripts.py) uses it too.
APPEND_FUNCTION = r"""
local function conversation_append(space, id, from, to, ttl)
  local hash, order, items = space .. ':v:' .. id, space .. ':vo:' .. id, space .. ':vi:' .. id
  local n = tonumber(redis.call('HGET', hash, 'n') or '0')
  for j = from, to, 2 do
    if redis.call('HEXISTS', items, ARGV[j]) == 0 then
      redis.call('ZADD', order, n, ARGV[j])
      n = n + 1
    end
    redis.call('HSET', items, ARGV[j], ARGV[j + 1])
  end
  redis.call('HSET', hash, 'n', n)
  redis.call('PEXPIRE', hash, ttl)
  if redis.call('EXISTS', order) == 1 then
    redis.call('PEXPIRE', order, ttl)
    redis.call('PEXPIRE', items, ttl)
  end
  return n
end
"""

# ARGV: space, id, ttl_ms, created_at, metadata, owner, (item_id, item)*
CREATE = APPEND_FUNCTION + r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[4], 'm', ARGV[5], 'w', ARGV[6], 'n', 0)
conversation_append(ARGV[1], ARGV[2], 7, #ARGV, ARGV[3])
return 1
"""

# ARGV: space, id, ttl_ms, metadata ('' keeps it). Returns {} when missing, else {created_at, metadata, owner}.
UPDATE = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'm', ARGV[4]) end
return redis.call('HMGET', KEYS[1], 'c', 'm', 'w')
"""

# ARGV: space, id, owner. Returns 'missing' | 'forbidden' | 'busy' | 'deleted'.
DELETE = r"""
local owner = redis.call('HGET', KEYS[1], 'w')
if not owner then return 'missing' end
if owner ~= ARGV[3] and ARGV[3] ~= '*' then return 'forbidden' end
if redis.call('EXISTS', ARGV[1] .. ':vl:' .. ARGV[2]) == 1 then return 'busy' end
redis.call('DEL', KEYS[1], ARGV[1] .. ':vo:' .. ARGV[2], ARGV[1] .. ':vi:' .. ARGV[2])
return 'deleted'
"""

# ARGV: space, id, ttl_ms, owner, (item_id, item)*. Returns {'missing'} | {'forbidden'} | {'ok'}.
ADD_ITEMS = APPEND_FUNCTION + r"""
local owner = redis.call('HGET', KEYS[1], 'w')
if not owner then return {'missing'} end
if owner ~= ARGV[4] and ARGV[4] ~= '*' then return {'forbidden'} end
conversation_append(ARGV[1], ARGV[2], 5, #ARGV, ARGV[3])
return {'ok'}
"""

# ARGV: space, id, after ('' for the start), limit, order ('asc' | 'desc').
# Returns {'missing'} | {'no_after'} | {'ok', owner, has_more, (id, item)*}.
LIST_ITEMS = r"""
local owner = redis.call('HGET', KEYS[1], 'w')
if not owner then return {'missing'} end
local order, items = ARGV[1] .. ':vo:' .. ARGV[2], ARGV[1] .. ':vi:' .. ARGV[2]
local limit = tonumber(ARGV[4])
local ids
if ARGV[5] == 'asc' then
  local from = '-inf'
  if ARGV[3] ~= '' then
    local score = redis.call('ZSCORE', order, ARGV[3])
    if not score then return {'no_after'} end
    from = '(' .. score
  end
  ids = redis.call('ZRANGEBYSCORE', order, from, '+inf', 'LIMIT', 0, limit + 1)
else
  local from = '+inf'
  if ARGV[3] ~= '' then
    local score = redis.call('ZSCORE', order, ARGV[3])
    if not score then return {'no_after'} end
    from = '(' .. score
  end
  ids = redis.call('ZREVRANGEBYSCORE', order, from, '-inf', 'LIMIT', 0, limit + 1)
end
local out = {'ok', owner, #ids > limit and '1' or '0'}
for j = 1, math.min(#ids, limit) do
  out[#out + 1] = ids[j]
  out[#out + 1] = redis.call('HGET', items, ids[j])
end
return out
"""

# ARGV: space, id, item_id. Returns {'missing'} | {'ok', owner, item or false}.
GET_ITEM = r"""
local owner = redis.call('HGET', KEYS[1], 'w')
if not owner then return {'missing'} end
return {'ok', owner, redis.call('HGET', ARGV[1] .. ':vi:' .. ARGV[2], ARGV[3])}
"""

# ARGV: space, id, item_id, owner. Returns {'missing'} | {'forbidden'} | {'no_item'} | {'ok', created_at, metadata}.
DELETE_ITEM = r"""
local rec = redis.call('HMGET', KEYS[1], 'w', 'c', 'm')
if not rec[1] then return {'missing'} end
if rec[1] ~= ARGV[4] and ARGV[4] ~= '*' then return {'forbidden'} end
if redis.call('HDEL', ARGV[1] .. ':vi:' .. ARGV[2], ARGV[3]) == 0 then return {'no_item'} end
redis.call('ZREM', ARGV[1] .. ':vo:' .. ARGV[2], ARGV[3])
return {'ok', rec[2], rec[3]}
"""

# ARGV: space, id, ttl_ms. What a turn in the conversation starts from.
# Returns {'missing'} | {'ok', owner, version, busy ('1' while another turn runs), item*} (oldest first).
LOAD = r"""
local rec = redis.call('HMGET', KEYS[1], 'w', 'n')
if not rec[1] then return {'missing'} end
local order, items = ARGV[1] .. ':vo:' .. ARGV[2], ARGV[1] .. ':vi:' .. ARGV[2]
local busy = redis.call('EXISTS', ARGV[1] .. ':vl:' .. ARGV[2]) == 1 and '1' or '0'
local out = {'ok', rec[1], rec[2] or '0', busy}
for _, item in ipairs(redis.call('ZRANGE', order, 0, -1)) do
  out[#out + 1] = redis.call('HGET', items, item)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if #out > 4 then
  redis.call('PEXPIRE', order, ARGV[3])
  redis.call('PEXPIRE', items, ARGV[3])
end
return out
"""
