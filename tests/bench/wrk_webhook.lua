-- wrk script of the webhook benchmark (tests/bench/bench_gateway.sh): sends
-- pre-signed Standard Webhooks deliveries, one a request, read from a file of
-- tests/bench/gen_webhooks.py (webhook-id TAB timestamp TAB signature TAB body
-- a line), to the URL's path; wrk thread T of N (numbered from 0 here) sends
-- lines T+1, T+1+N, T+1+2N, ... in order, so no two requests share a
-- webhook-id. A thread that runs out of lines starts its slice again
-- (the gateway answers those 200 as replays) and counts them as wrapped.
--
--   wrk -t N -c C -d D -s wrk_webhook.lua URL -- FILE N
--
-- done() prints one parseable line (latencies in milliseconds):
--   WRK_RESULT requests=.. duration_s=.. rps=.. p50_ms=.. p90_ms=.. p99_ms=..
--     p999_ms=.. max_ms=.. mean_ms=.. s202=.. non2xx=.. errors_connect=..
--     errors_read=.. errors_write=.. errors_timeout=.. sent=.. lines=.. wrapped=..
-- and the answers by status:  WRK_STATUS 202=n 503=n ...
-- (non2xx: answers whose status is not 2xx; s202: answers 202. wrk's own
-- errors_status counts >= 400 only, so it is not used.)

local threads = {}
local nextid = 0

function setup(thread)
    thread:set("tid", nextid)
    nextid = nextid + 1
    table.insert(threads, thread)
end

local reqs = {}
local i = 0
sent = 0
lines = 0
counts = {}

function init(args)
    local file, nthreads = args[1], tonumber(args[2])
    if not file or not nthreads or nthreads < 1 then
        error("usage: wrk ... -s wrk_webhook.lua URL -- FILE NTHREADS")
    end
    local f = assert(io.open(file, "r"))
    local n = 0
    for line in f:lines() do
        if n % nthreads == tid then
            local id, ts, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
            if not id then
                error(file .. ": line " .. (n + 1) .. " is not id TAB timestamp TAB signature TAB body")
            end
            reqs[#reqs + 1] = wrk.format("POST", nil, {
                ["Content-Type"] = "application/json",
                ["webhook-id"] = id,
                ["webhook-timestamp"] = ts,
                ["webhook-signature"] = sig,
            }, body)
        end
        n = n + 1
    end
    f:close()
    lines = #reqs
    if lines == 0 then
        error(file .. ": no line for thread " .. tid .. " of " .. nthreads)
    end
end

function request()
    i = i + 1
    if i > lines then
        i = 1
    end
    sent = sent + 1
    return reqs[i]
end

function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    local nsent, nlines, wrapped = 0, 0, 0
    for _, t in ipairs(threads) do
        local c = t:get("counts") or {}
        for st, v in pairs(c) do
            total[st] = (total[st] or 0) + v
        end
        local s, l = t:get("sent") or 0, t:get("lines") or 0
        nsent, nlines = nsent + s, nlines + l
        if s > l then
            wrapped = wrapped + s - l
        end
    end
    local s202, non2xx = total[202] or 0, 0
    local codes = {}
    for st, v in pairs(total) do
        if st < 200 or st > 299 then
            non2xx = non2xx + v
        end
        codes[#codes + 1] = st
    end
    table.sort(codes)
    local secs = summary.duration / 1e6
    local e = summary.errors
    local ms = function(us) return string.format("%.3f", us / 1000) end
    io.write(string.format("WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%s p90_ms=%s "
        .. "p99_ms=%s p999_ms=%s max_ms=%s mean_ms=%s s202=%d non2xx=%d errors_connect=%d "
        .. "errors_read=%d errors_write=%d errors_timeout=%d sent=%d lines=%d wrapped=%d\n",
        summary.requests, secs, summary.requests / secs, ms(latency:percentile(50)),
        ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency:percentile(99.9)),
        ms(latency.max), ms(latency.mean), s202, non2xx, e.connect, e.read, e.write, e.timeout,
        nsent, nlines, wrapped))
    local parts = {}
    for _, st in ipairs(codes) do
        parts[#parts + 1] = st .. "=" .. total[st]
    end
    io.write("WRK_STATUS " .. table.concat(parts, " ") .. "\n")
end
