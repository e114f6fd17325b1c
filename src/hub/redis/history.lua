-- A channel's position and retained frames, read at one instant.
-- KEYS: meta, frames, global epoch. ARGV: after, limit, max age (µs),
-- candidate epoch, global epoch TTL (ms). Returns epoch, head, oldest
-- retained seq and the frames after `after` (seqs are contiguous, so the
-- first one's index is known).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- Never published, or forgotten: seq 0 in the hub's epoch. Frames left
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
