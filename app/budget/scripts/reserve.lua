-- Reserve points for one Confluence call, atomically, for every worker process.
-- ARGV: 1 key prefix, 2 now in ms ('' = Redis TIME), 3 tenant, 4 cost, 5 priority,
-- 6 quota, 7 tenant quota (0 = none), 8 reserve fraction, 9 reserve release ms,
-- 10 pacing '1'/'0', 11 pacing lead ms, 12 burst requests/s (0 = none),
-- 13 backlog window ms (0 = no fair shares), 14 near-limit burst factor, 15 backlog grace ms,
-- 16 reservation id ('' = not tracked), 17 in-flight ms (how long it may stay unsettled),
-- 18 the sweep's priority (a tenant waiting only at it holds back only sweeps).
-- Returns {1, now_ms, hour_start_ms, spent_after} or {0, now_ms, retry_at_ms, reason}.
-- Keys are derived from the prefix here because the hour is known only after TIME
-- (single-node Redis and Sentinel only; not Redis Cluster).
local prefix = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local tenant = ARGV[3]
local cost = tonumber(ARGV[4])
local prio = tonumber(ARGV[5])
local quota = tonumber(ARGV[6])
local tquota = tonumber(ARGV[7])
local rfrac = tonumber(ARGV[8])
local release = tonumber(ARGV[9])
local pacing = ARGV[10] == '1'
local lead = tonumber(ARGV[11])
local burst = tonumber(ARGV[12])
local window = tonumber(ARGV[13])
local near_factor = tonumber(ARGV[14])
local grace = tonumber(ARGV[15])
local rid = ARGV[16] or ''
local inflight_ms = tonumber(ARGV[17] or '0')
local sweep = tonumber(ARGV[18] or '2')
local HOUR = 3600000
local hstart = math.floor(now / HOUR) * HOUR
local hend = hstart + HOUR
local H = prefix .. 'budget:h:' .. string.format('%d', hstart)
-- Tenants waiting for budget: 'backlog' at any priority, 'backlog:u' above the sweep's
-- (score: until when). Each has a 'share' set of the same tenants for this hour, scored by
-- points spent this hour per unit of weight, so that the least-served waiting tenants are
-- read in O(log n) rather than every waiting tenant on every reservation.
local backlog = prefix .. 'budget:backlog'
local backlog_u = prefix .. 'budget:backlog:u'
local share = prefix .. 'budget:share:' .. string.format('%d', hstart)
local share_u = share .. ':u'
local last_share = prefix .. 'budget:share:' .. string.format('%d', hstart - HOUR)
local weights = prefix .. 'budget:weights'
-- How many of the least-served waiting tenants one reservation reads (see the fair check).
local FAIR_SCAN = 16
local inflight = prefix .. 'budget:inflight'

-- Reservations nobody settled in time belong to a worker that died mid-call: their estimate
-- stays charged (the call may have reached Confluence) but leaves "reserved" (in flight).
for _, m in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 100)) do
  local hs, _, p, c, t = string.match(m, '^(%d+)|([^|]*)|(%d+)|(%d+)|(.*)$')
  if hs then
    local HK = prefix .. 'budget:h:' .. hs
    if redis.call('EXISTS', HK) == 1 then
      redis.call('HINCRBY', HK, 'reserved', -tonumber(c))
      redis.call('HINCRBY', HK, 't:' .. t .. ':r', -tonumber(c))
      redis.call('HINCRBY', HK, 'p:' .. p .. ':r', -tonumber(c))
    end
  end
  redis.call('ZREM', inflight, m)
end

local function num(v)
  if not v then return 0 end
  return tonumber(v) or 0
end

local function weight(u)
  local w = num(redis.call('HGET', weights, u))
  if w <= 0 then w = 1 end
  return w
end

-- A tenant's place in the share sets: exact, so that equal shares compare equal.
local function level(u, spent)
  return string.format('%.17g', spent / weight(u))
end

local function keep_shares()
  redis.call('PEXPIRE', share, hend - now + HOUR)
  redis.call('PEXPIRE', share_u, hend - now + HOUR)
end

local tspent = 0  -- the tenant's points this hour, read below

local function deny(retry, reason, mark)
  if mark and window > 0 then
    local until_ms = math.max(retry, now) + window
    local at = level(tenant, tspent)
    redis.call('ZADD', backlog, 'GT', until_ms, tenant)
    redis.call('ZADD', share, at, tenant)
    if prio < sweep then
      redis.call('ZADD', backlog_u, 'GT', until_ms, tenant)
      redis.call('ZADD', share_u, at, tenant)
    end
    keep_shares()
  end
  return {0, now, math.ceil(retry), reason}
end

local paused = num(redis.call('GET', prefix .. 'budget:pause'))
if paused > now then return deny(paused, 'paused', false) end
local tpaused = num(redis.call('GET', prefix .. 'budget:pause:t:' .. tenant))
if tpaused > now then return deny(tpaused, 'tenant-paused', false) end

local h = redis.call('HMGET', H, 'charged', 'external', 'limit', 'near', 't:' .. tenant .. ':c',
  'reserved')
local q = quota
if h[3] then q = math.min(q, tonumber(h[3])) end
local near = h[4] == '1'
tspent = num(h[5])

-- Marks run out (pruned a hundred at a time; the fair check skips any left over). Tenants
-- still waiting from the last hour (a mark ends at most a window after its hour) are carried
-- into this hour's share sets FAIR_SCAN at a time per reservation, each once, rather than all
-- by the hour's first reservation: the fair check sees each one from then on.
local carry = {{backlog, share, last_share}, {backlog_u, share_u, last_share .. ':u'}}
local carried = false
for _, sets in ipairs(carry) do
  local gone = redis.call('ZRANGEBYSCORE', sets[1], '-inf', now, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('ZREM', sets[1], unpack(gone))
    redis.call('ZREM', sets[2], unpack(gone))
  end
  if window > 0 then
    for _, u in ipairs(redis.call('ZRANGE', sets[3], 0, FAIR_SCAN - 1)) do
      redis.call('ZREM', sets[3], u)
      local mark = tonumber(redis.call('ZSCORE', sets[1], u))
      if mark ~= nil and mark > now then
        local spent = num(redis.call('HGET', H, 't:' .. u .. ':c'))
        redis.call('ZADD', sets[2], 'NX', level(u, spent), u)
        carried = true
      end
    end
  end
end
if carried then keep_shares() end
local need = num(h[1]) + num(h[2]) + cost
if need > q then
  -- when it ran out (first time only): points spent, not estimates still in flight, which
  -- may settle far lower (a list reserved at its limit) and leave the hour going on
  if num(h[1]) - num(h[6]) + num(h[2]) >= q then
    redis.call('HSETNX', H, 'exhausted', string.format('%d', now))
  end
  return deny(hend, 'quota', false)
end

local reserve = 0
if prio > 0 and rfrac > 0 then
  local rel = 1
  if release > 0 then rel = math.min(1, (hend - now) / release) end
  reserve = rfrac * q * prio * rel
end
local cap = q - reserve
if need > cap then
  local retry = hend
  if release > 0 then retry = hend - (q - need) * release / (rfrac * q * prio) end
  return deny(retry, 'reserve', false)
end
if pacing or near then
  local paced = cap * math.min(1, math.max(0, now - hstart + lead) / HOUR)
  if need > paced then
    local when = hstart + need / cap * HOUR - lead
    return deny(math.min(hend, math.max(now, when)), 'pacing', true)
  end
end
if tquota > 0 and tspent + cost > tquota then return deny(hend, 'tenant-quota', false) end

-- Fair shares among the tenants' reactions; the sweep comes last: a tenant waiting only with
-- a sweep call holds back other tenants' sweeps, never a call of a higher priority.
if window > 0 then
  local held_by, held_share = backlog, share
  if prio < sweep then held_by, held_share = backlog_u, share_u end
  local first = nil
  -- The least-served waiting tenants that have spent less (per weight) than this one: u is
  -- behind us and waiting (refused by the pacing line, the burst limit or its fair share:
  -- points we leave are points it gets); it retries at (its mark - window): look again after
  -- the first of them does (among the FAIR_SCAN least served). A tenant refused for its own
  -- reasons (the reserve of its priority, a list larger than what is left) is not marked
  -- waiting, so it holds no one back.
  local behind = redis.call('ZRANGEBYSCORE', held_share, '-inf', '(' .. level(tenant, tspent),
    'LIMIT', 0, FAIR_SCAN)
  for _, u in ipairs(behind) do
    local mark = tonumber(redis.call('ZSCORE', held_by, u))
    if mark == nil or mark <= now then
      redis.call('ZREM', held_share, u)  -- no longer waiting (gone, or its mark ran out)
    elseif u ~= tenant then
      local due = mark - window
      if first == nil or due < first then first = due end
    end
  end
  if first ~= nil then
    return deny(math.min(now + window, math.max(now, first) + grace / 4), 'fair-share', true)
  end
end

if burst > 0 then
  local rate = burst
  if near then rate = burst * near_factor end
  local interval = 1000 / rate
  local bkey = prefix .. 'budget:burst'
  local tat = math.max(num(redis.call('GET', bkey)), now)
  -- a burst of one second's worth of calls; below one call a second, one call at a time
  local allow_at = tat - math.max(0, 1000 - interval)
  if now < allow_at then return deny(allow_at, 'burst', true) end
  local next_tat = tat + interval
  redis.call('SET', bkey, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
end

local minute = 'm:' .. string.format('%d', math.floor((now - hstart) / 60000))
for _, field in ipairs({'charged', 'reserved', 't:' .. tenant .. ':c', 't:' .. tenant .. ':r',
                        'p:' .. prio .. ':c', 'p:' .. prio .. ':r', minute}) do
  redis.call('HINCRBY', H, field, cost)
end
redis.call('HINCRBY', H, 'calls', 1)
if window > 0 then
  local at = level(tenant, tspent + cost)
  redis.call('ZADD', share, 'XX', at, tenant)
  redis.call('ZADD', share_u, 'XX', at, tenant)
end
if rid ~= '' and inflight_ms > 0 then
  local member = string.format('%d', hstart) .. '|' .. rid .. '|' .. prio .. '|' .. cost .. '|' .. tenant
  redis.call('ZADD', inflight, now + inflight_ms, member)
end
-- served now: still counts as waiting for a moment, in case its next job is right behind
redis.call('ZADD', backlog, 'XX', 'LT', now + math.min(window, grace), tenant)
redis.call('ZADD', backlog_u, 'XX', 'LT', now + math.min(window, grace), tenant)
redis.call('PEXPIRE', H, hend - now + HOUR)
return {1, now, hstart, need}
