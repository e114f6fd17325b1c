-- A channel's position and retained frames, read at one instant.
-- KEYS: meta, frames, the hub's epoch (the channel's on a cluster). ARGV: after, limit,
-- max age (µs), candidate epoch, hub epoch TTL (ms), meta TTL (ms),
-- `create` (1: a subscriber reads, so a channel without metadata is created
-- now, in the candidate epoch), `single` or `cluster`. Returns epoch, head,
-- oldest retained seq and the frames after `after` (seqs are contiguous, so
-- the first one's index is known).
local node = foreign_meta(KEYS[1])
if node then
  -- Failed over: start over in a fresh epoch now, so that no client reads
  -- this node's older head as the channel's and takes new seqs for old ones.
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'head', 0, 'node', node)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {ARGV[4], '0', '1', {}}
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch and ARGV[7] == '1' then
  -- A subscriber's first read creates the channel (once: nothing else
  -- writes between the HGET and here), so that the epoch it is told is
  -- the one the first publish will carry. Frames left without their
  -- metadata belong to a lost sequence.
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'head', 0)
  if cluster then redis.call('HSET', KEYS[1], 'node', redis.call('CLUSTER', 'MYID')) end
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return {ARGV[4], '0', '1', {}}
end
if not epoch then
  -- Never subscribed or published, or forgotten: seq 0 in the hub's epoch,
  -- which the first publish will not keep (it starts a fresh one), so a
  -- poller at 0 is then told of a reset, and misses nothing. Frames left
  -- without their metadata belong to a lost sequence; the next publish
  -- drops them.
  return {global_epoch(KEYS[3], ARGV[4], ARGV[5]), '0', '1', {}}
end
local head = tonumber(redis.call('HGET', KEYS[1], 'head') or '0')
local t = redis.call('TIME')
trim_age(KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), tonumber(ARGV[3]))
local oldest = head - redis.call('LLEN', KEYS[2]) + 1
local after = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local frames = {}
if limit > 0 and after < head then
  local from = math.max(after + 1, oldest) - oldest
  frames = redis.call('LRANGE', KEYS[2], from, from + limit - 1)
end
return {epoch, tostring(head), tostring(oldest), frames}
