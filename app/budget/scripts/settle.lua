-- Settle one reservation with what the response said, and learn from the server's headers.
-- ARGV: 1 key prefix, 2 now in ms ('' = Redis TIME), 3 tenant, 4 priority,
-- 5 reservation hour start ms, 6 estimate, 7 points to charge, 8 HTTP status,
-- 9 server remaining (-1 = unknown), 10 server limit (-1 = unknown), 11 near limit '1'/'0',
-- 12 Retry-After ms (-1 = none), 13 RateLimit-Reason ('' = none), 14 configured quota,
-- 15 pause ms for a 429 without Retry-After, 16 reservation id ('' = not tracked),
-- 17 '1' when the figures and the refusal are the tenant's own quota (else the app's),
-- 18 when the server's window resets, epoch ms (-1 = not said), 19 clock skew tolerated ms.
-- Returns {charged, external} of the current hour.
local prefix = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local tenant = ARGV[3]
local prio = ARGV[4]
local rstart = ARGV[5]
local estimate = tonumber(ARGV[6])
local charge = tonumber(ARGV[7])
local status = tonumber(ARGV[8])
local remaining = tonumber(ARGV[9])
local limit = tonumber(ARGV[10])
local near = ARGV[11] == '1'
local retry_after = tonumber(ARGV[12])
local reason = string.lower(ARGV[13])
local quota = tonumber(ARGV[14])
local default_pause = tonumber(ARGV[15])
local rid = ARGV[16] or ''
local tenant_scoped = ARGV[17] == '1'
local reset_ms = tonumber(ARGV[18] or '-1') or -1
local skew = tonumber(ARGV[19] or '0') or 0
local HOUR = 3600000
local hstart = math.floor(now / HOUR) * HOUR
-- Confluence counts each call in its hour by its own clock, the budget by Redis's. At the top
-- of the hour a response may still report the window that has just ended (nearly spent,
-- resetting now): those figures are not this hour's. Without a reset time to tell, figures
-- read within the skew of the hour's start are not trusted either.
local stale
if reset_ms >= 0 then
  stale = reset_ms <= hstart + skew
else
  stale = now < hstart + skew
end
local cur = string.format('%d', hstart)
local H = prefix .. 'budget:h:' .. rstart
local C = prefix .. 'budget:h:' .. cur

local function num(v)
  if not v then return 0 end
  return tonumber(v) or 0
end

-- A tracked reservation is in flight until settled here, unless the reserve script already
-- gave its points back (taken for a dead worker's): then "reserved" must not drop twice.
local in_flight = true
if rid ~= '' then
  local member = rstart .. '|' .. rid .. '|' .. prio .. '|' .. string.format('%d', estimate)
    .. '|' .. tenant
  in_flight = redis.call('ZREM', prefix .. 'budget:inflight', member) == 1
end

if redis.call('EXISTS', H) == 1 then
  local delta = charge - estimate
  redis.call('HINCRBY', H, 'charged', delta)
  local tspent = redis.call('HINCRBY', H, 't:' .. tenant .. ':c', delta)
  if delta ~= 0 then
    -- a waiting tenant's place among the least served (see reserve.lua) moves with its spend
    local w = num(redis.call('HGET', prefix .. 'budget:weights', tenant))
    if w <= 0 then w = 1 end
    local at = string.format('%.17g', tspent / w)
    redis.call('ZADD', prefix .. 'budget:share:' .. rstart, 'XX', at, tenant)
    redis.call('ZADD', prefix .. 'budget:share:' .. rstart .. ':u', 'XX', at, tenant)
  end
  redis.call('HINCRBY', H, 'p:' .. prio .. ':c', delta)
  if in_flight then
    redis.call('HINCRBY', H, 'reserved', -estimate)
    redis.call('HINCRBY', H, 't:' .. tenant .. ':r', -estimate)
    redis.call('HINCRBY', H, 'p:' .. prio .. ':r', -estimate)
  end
  if rstart == cur then
    redis.call('HINCRBY', H, 'm:' .. string.format('%d', math.floor((now - hstart) / 60000)), delta)
  end
end

local function keep(key)
  redis.call('PEXPIRE', key, hstart + 2 * HOUR - now)
end

local global_quota = false
if status == 429 then
  redis.call('HINCRBY', C, 'n429', 1)
  keep(C)
  local wait = retry_after
  if wait < 0 then wait = default_pause end
  local until_ms = now + wait
  local key = prefix .. 'budget:pause'
  if tenant_scoped or string.find(reason, 'tenant', 1, true) then
    key = prefix .. 'budget:pause:t:' .. tenant
  elseif reason ~= '' and not string.find(reason, 'burst', 1, true) then
    -- The app's quota: spent for the rest of the hour when the server says to wait until
    -- about then (or says no time at all). A Retry-After that ends well before the hour
    -- is taken at its word: a pause, not an hour written off.
    global_quota = not stale and (retry_after < 0 or now + retry_after >= hstart + HOUR - 60000)
  end
  if until_ms > num(redis.call('GET', key)) then
    redis.call('SET', key, string.format('%d', until_ms), 'PX', math.max(1, math.ceil(wait)))
    if key ~= prefix .. 'budget:pause' then
      -- Paused tenants are listed here too, so that nobody has to scan for their keys.
      local pauses = prefix .. 'budget:pauses'
      redis.call('ZREMRANGEBYSCORE', pauses, '-inf', now)
      redis.call('ZADD', pauses, until_ms, tenant)
    end
  end
end

if rstart == cur and not stale and (remaining >= 0 or limit > 0 or near or global_quota) then
  local h = redis.call('HMGET', C, 'charged', 'external', 'limit')
  local q = quota
  if h[3] then q = math.min(q, tonumber(h[3])) end
  if limit > 0 and limit < q then
    q = limit
    redis.call('HSET', C, 'limit', string.format('%d', limit))
  end
  if global_quota then remaining = 0 end
  if remaining >= 0 then
    local extra = (q - num(h[1]) - num(h[2])) - remaining
    if extra > 0 then
      redis.call('HINCRBY', C, 'external', extra)
      -- and in the minute it was learned: the burn series adds up to what the hour spent
      redis.call('HINCRBY', C, 'm:' .. string.format('%d', math.floor((now - hstart) / 60000)), extra)
    end
    -- the moment the hour's quota ran out, kept for the operators (first time only)
    if remaining == 0 then redis.call('HSETNX', C, 'exhausted', string.format('%d', now)) end
  end
  if near then redis.call('HSET', C, 'near', '1') end
  keep(C)
end
local c = redis.call('HMGET', C, 'charged', 'external', 'reserved', 'limit')
if c[1] then
  -- the moment the hour's points were all spent (settled), kept for the operators
  local q = quota
  if c[4] then q = math.min(q, tonumber(c[4])) end
  if num(c[1]) - num(c[3]) + num(c[2]) >= q then
    redis.call('HSETNX', C, 'exhausted', string.format('%d', now))
  end
end
return {num(c[1]), num(c[2])}
