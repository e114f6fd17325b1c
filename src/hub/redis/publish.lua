-- One publish, atomically: next seq, append and trim history, PUBLISH.
-- KEYS: meta, frames, global epoch. ARGV: channel, data (compact JSON),
-- history size, max age (µs), candidate epoch, live channel, frames TTL (ms).
-- Returns the frame, the very bytes stored and published.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = global_epoch(KEYS[3], ARGV[5])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local seq = redis.call('HINCRBY', KEYS[1], 'head', 1)
local t = redis.call('TIME')
local ts = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local json = '{"type":"message","channel":"' .. ARGV[1] .. '","seq":' .. seq .. ',"ts":' .. ts .. ',"data":' .. ARGV[2] .. '}'
local frame = epoch .. ' ' .. seq .. ' ' .. ts .. ' ' .. json
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], frame)
  redis.call('LTRIM', KEYS[2], -size, -1)
  trim_age(KEYS[2], tonumber(ts), tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
end
redis.call('PUBLISH', ARGV[6], frame)
return frame
