-- wrk script: POST the GoCM form body to /gcm/send, TOKENS tokens a request
-- (environment, default 1), and print the latency percentiles fcmd's
-- benchmark table needs. With MESSAGES set (and WRK_THREADS, the -t given to
-- wrk), each thread stops sending once it has its share of MESSAGES accepted
-- (answered 200; a 503 "queue full" is counted as an error and sent again).
local n = tonumber(os.getenv("TOKENS") or "1")
local parts = {}
for i = 1, n do parts[#parts + 1] = "tokens=token" .. i end
wrk.method = "POST"
wrk.body = table.concat(parts, "&") .. '&payload={"title": "hello"}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local limit = tonumber(os.getenv("MESSAGES") or "") or 0
if limit > 0 then
    -- Only defined when needed: wrk parses answers for Lua only if it is.
    local share = math.ceil(limit / tonumber(os.getenv("WRK_THREADS") or "1"))
    local accepted = 0
    function response(status, headers, body)
        if status == 200 then accepted = accepted + 1 end
        if accepted >= share then wrk.thread:stop() end
    end
end

-- DELAY_MS: each connection waits this long before its next request (a steady load).
local delay_ms = tonumber(os.getenv("DELAY_MS") or "") or 0
if delay_ms > 0 then
    function delay() return delay_ms end
end

function done(summary, latency, requests)
    io.write(string.format("latency_us p50 %d p99 %d p99.9 %d\n", latency:percentile(50),
        latency:percentile(99), latency:percentile(99.9)))
    io.write(string.format("requests %d errors %d\n", summary.requests,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
