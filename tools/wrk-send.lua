-- wrk script: POST the GoCM form body to /gcm/send, TOKENS tokens a request
-- (environment, default 1), and print the latency percentiles fcmd's
-- benchmark table needs.
local n = tonumber(os.getenv("TOKENS") or "1")
local parts = {}
for i = 1, n do parts[#parts + 1] = "tokens=token" .. i end
wrk.method = "POST"
wrk.body = table.concat(parts, "&") .. '&payload={"title": "hello"}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function done(summary, latency, requests)
    io.write(string.format("latency_us p50 %d p99 %d p99.9 %d\n", latency:percentile(50),
        latency:percentile(99), latency:percentile(99.9)))
    io.write(string.format("requests %d errors %d\n", summary.requests,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
