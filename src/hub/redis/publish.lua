-- One publish, atomically: idempotency check, next seq, append and trim
-- history, TTLs, PUBLISH (SPUBLISH on a cluster).
-- KEYS: meta, frames, and the idempotency record when the publish has a key.
-- ARGV: channel, data (compact JSON),
-- history size, max age (µs), candidate epoch, live channel, history TTL
-- (ms), meta TTL (ms), idempotency TTL (ms), `single` or `cluster`.
-- Returns {frame, 0}: the frame, the very bytes stored and published; or
-- {header, 1}: a repeated key, nothing done, and the first publish's
-- `epoch seq ts`.
local idem = KEYS[3]
if idem then
  local first = redis.call('GET', idem)
  if first then return {first, 1} end
end
-- Failed over: the sequence, its frames and its epoch are dropped.
local failed_over = foreign_meta(KEYS[1])
if failed_over then redis.call('DEL', KEYS[1]) end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  -- A channel without metadata is new, or lost its sequence (expired,
  -- evicted, deleted, or written before a failover): it starts in a fresh
  -- epoch, never one it may have had, whose seqs clients hold. Frames that
  -- outlived their metadata belong to the lost sequence.
  redis.call('DEL', KEYS[2])
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  if cluster then redis.call('HSET', KEYS[1], 'node', redis.call('CLUSTER', 'MYID')) end
end
local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local t = redis.call('TIME')
local ts = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local header = epoch .. ' ' .. seq .. ' ' .. ts
local json = '{"type":"message","channel":"' .. ARGV[1] .. '","seq":' .. seq .. ',"ts":' .. ts .. ',"data":' .. ARGV[2] .. '}'
local frame = header .. ' ' .. json
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], frame)
  redis.call('LTRIM', KEYS[2], -size, -1)
  trim_age(KEYS[2], tonumber(ts), tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
if idem then
  redis.call('SET', idem, header, 'PX', ARGV[9])
end
redis.call(cluster and 'SPUBLISH' or 'PUBLISH', ARGV[6], frame)
return {frame, 0}
