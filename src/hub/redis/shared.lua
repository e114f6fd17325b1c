-- Prepended to both scripts.
--
-- A frame is `epoch seq ts json` (see the module doc of src/hub/redis): the
-- header's three fields end at the third space, before the JSON starts.
--
-- The last ARGV of both scripts says where they run: `single` (one Redis:
-- history's KEYS[3] is the hub's epoch, live messages go out with PUBLISH)
-- or `cluster` (every key is in the channel's slot, so history's KEYS[3] is
-- the channel's own stand-in for the hub's epoch; SPUBLISH; and the
-- channel's meta names the node that wrote it).
local cluster = ARGV[#ARGV] == 'cluster'

-- Drops frames older than max_age (µs) from the head of the list at key. The
-- ts is read from the header; the anchored pattern never scans the JSON.
local function trim_age(key, now, max_age)
  while true do
    local first = redis.call('LINDEX', key, 0)
    if not first then return end
    local ts = tonumber(string.match(first, '^%w+ %d+ (%d+) '))
    if ts and now - ts > max_age then redis.call('LPOP', key) else return end
  end
end

-- The hub's epoch, which a channel without metadata reads in when no
-- subscriber creates it. A fresh or flushed Redis has none, nor has one
-- whose epoch expired: then the candidate becomes it, for ttl_ms, never
-- refreshed. No channel is ever created in it.
local function global_epoch(key, candidate, ttl_ms)
  local g = redis.call('GET', key)
  if not g then g = candidate; redis.call('SET', key, g, 'PX', ttl_ms) end
  return g
end

-- On a cluster, the node this script runs on, when the channel's meta was
-- written by another one: the slot failed over (or moved) since, and with
-- asynchronous replication this node may lack messages the other one
-- acknowledged. Their seqs must not be handed out again in the same epoch,
-- so the caller starts the channel over in a fresh one. Nil otherwise.
local function foreign_meta(meta)
  if not cluster then return nil end
  local node = redis.call('CLUSTER', 'MYID')
  local writer = redis.call('HGET', meta, 'node')
  if writer and writer ~= node then return node end
  return nil
end
