-- One request per key of KEYS keys (KEY_PREFIX<n>), spread over the threads,
-- with METHOD (GET, PUT with a 1 KiB body, DELETE). done() prints one JSON
-- line the benchmark reads. Not HEAD: wrk's parser then waits for the body
-- the Content-Length announces.
-- setup() runs in wrk's main Lua state, init() and request() in each
-- thread's own: the thread count comes from THREADS, not a shared counter.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  n = 0
  nthreads = tonumber(os.getenv("THREADS") or "2")
  prefix = os.getenv("KEY_PREFIX") or "/bench/k"
  keys = tonumber(os.getenv("KEYS") or "10000")
  method = os.getenv("METHOD") or "GET"
  body = nil
  if method == "PUT" then body = string.rep("x", tonumber(os.getenv("VALUE_BYTES") or "1024")) end
end

function request()
  local i = (id + n * nthreads) % keys
  n = n + 1
  return wrk.format(method, prefix .. i, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"bad_status":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
