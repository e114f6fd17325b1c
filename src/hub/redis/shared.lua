-- Prepended to both scripts.
--
-- A frame is `epoch seq ts json` (see the module doc of src/hub/redis): the
-- header's three fields end at the third space, before the JSON starts.

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

-- The epoch of a channel that has none: the hub's, which a fresh (or
-- flushed) Redis does not have yet, so the candidate becomes it.
local function global_epoch(key, candidate)
  local g = redis.call('GET', key)
  if not g then g = candidate; redis.call('SET', key, g) end
  return g
end
