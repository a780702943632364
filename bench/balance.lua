-- wrk script for bench/balance.sh: chat requests from a fixed-seed trace.
--
--   TRACE=shared     64 groups x 16 prompts, each group's system prompt
--                    ~2048 tokens (8 KB), drawn in a random order
--   TRACE=nosharing  every request has its own system prompt
--   TRACE=zipf       groups drawn with Zipf s=1.1 over 64 groups
--
-- The header x-replica names the replica a perfect prefix assignment
-- would pick (group mod 4), for the oracle. done() prints one line:
--   RESULT requests errors p50_ms p90_ms goodput_rps rps
-- goodput = requests/s answered within SLO_MS (default 50).

local trace = os.getenv("TRACE") or "shared"
local slo = tonumber(os.getenv("SLO_MS") or "50") * 1000
local groups, per_group = 64, 16

math.randomseed(tonumber(os.getenv("SEED") or "42"))

local words = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
                "golf", "hotel", "india", "juliet", "kilo", "lima" }

local function system_prompt(g)
    -- ~8 KB of text that differs from group to group from the first word
    local t = { "You are assistant number " .. g .. "." }
    local n = g * 7919
    for i = 1, 1360 do
        n = (n * 1103515245 + 12345) % 2147483648
        t[#t + 1] = words[(n % #words) + 1]
    end
    return table.concat(t, " ")
end

local prompts = {}
local function prompt_of(g)
    if not prompts[g] then prompts[g] = system_prompt(g) end
    return prompts[g]
end

-- Zipf(s) over 1..groups by inversion of the cumulative weights
local zipf_cdf = {}
do
    local sum, s = 0, 1.1
    for k = 1, groups do sum = sum + 1 / k ^ s end
    local acc = 0
    for k = 1, groups do
        acc = acc + (1 / k ^ s) / sum
        zipf_cdf[k] = acc
    end
end

local function zipf()
    local u = math.random()
    for k = 1, groups do
        if u <= zipf_cdf[k] then return k - 1 end
    end
    return groups - 1
end

-- the shared-prefix trace: every (group, prompt) pair once per pass, shuffled
local order, pos = {}, 0
local function shuffle()
    order = {}
    for g = 0, groups - 1 do
        for i = 0, per_group - 1 do order[#order + 1] = { g, i } end
    end
    for i = #order, 2, -1 do
        local j = math.random(i)
        order[i], order[j] = order[j], order[i]
    end
    pos = 0
end
shuffle()

local seq = 0

request = function()
    local g, i
    seq = seq + 1
    if trace == "nosharing" then
        g, i = 1000 + seq, 0
    elseif trace == "zipf" then
        g, i = zipf(), seq
    else
        pos = pos + 1
        if pos > #order then shuffle(); pos = 1 end
        g, i = order[pos][1], order[pos][2]
    end

    local sys = (trace == "nosharing") and system_prompt(g) or prompt_of(g)
    local body = '{"model":"mock","max_tokens":4,"messages":['
        .. '{"role":"system","content":"' .. sys .. '"},'
        .. '{"role":"user","content":"Question ' .. i .. ' of ' .. seq
        .. ': what is ' .. g .. ' plus ' .. i .. '?"}]}'

    return wrk.format("POST", "/v1/chat/completions", {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer sk-bench",
        ["x-replica"] = tostring(g % 4),
    }, body)
end

done = function(summary, latency, requests)
    -- fraction of requests within the SLO, from the latency distribution
    local lo, hi = 0, 100
    if latency.max <= slo then
        lo = 100
    elseif latency.min > slo then
        lo = 0
    else
        for _ = 1, 30 do
            local mid = (lo + hi) / 2
            if latency:percentile(mid) <= slo then lo = mid else hi = mid end
        end
    end
    local secs = summary.duration / 1e6
    local n = summary.requests
    local errs = summary.errors.status + summary.errors.connect
                 + summary.errors.read + summary.errors.write
                 + summary.errors.timeout
    io.write(string.format("RESULT %d %d %.1f %.1f %.1f %.1f\n", n, errs,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        (n - errs) * lo / 100 / secs, n / secs))
end
