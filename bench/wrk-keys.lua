-- One request per key of KEYS keys (KEY_PREFIX<n>), spread over the threads,
-- with METHOD (GET, PUT with a VALUE_BYTES body, DELETE). done() prints one
-- JSON line the benchmark reads. Not HEAD: wrk's parser then waits for the
-- body the Content-Length announces.
-- By default the keys go round for the whole duration. With ONCE=1 each key
-- is sent once: a connection with no key left to send waits, and a thread
-- that has had every one of its keys answered stops and prints "thread
-- done"; the benchmark interrupts wrk (SIGINT) when every thread has, so the
-- run lasts as long as the keys do. (wrk itself would sleep out the whole -d;
-- it times the run up to the interrupt.)
-- In that mode it also counts the answers 201 Created, so the benchmark can
-- tell that a PUT of new keys created every one and a PUT of existing keys
-- none (done() prints the sum as "created").
-- setup() runs in wrk's main Lua state, init() and request() in each
-- thread's own: the thread count comes from THREADS, not a shared counter.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(os.getenv("THREADS") or "2")
  prefix = os.getenv("KEY_PREFIX") or "/bench/k"
  keys = tonumber(os.getenv("KEYS") or "10000")
  method = os.getenv("METHOD") or "GET"
  body = nil
  if method == "PUT" then body = string.rep("x", tonumber(os.getenv("VALUE_BYTES") or "1024")) end
  -- wrk calls the first thread's request() once before the run to check it,
  -- and sends nothing of what it returns: that call must not use up key 0.
  n = 0
  if id == 0 then n = -1 end
  if os.getenv("ONCE") == "1" then
    local mine = math.floor((keys - 1 - id) / nthreads) + 1
    local granted, answered = 0, 0
    created = 0 -- a global: done() reads it from each thread's state
    -- wrk looks for these two functions after init(); defined, they cost it
    -- a timer and a Lua call per request, so only this mode has them.
    -- delay() runs before each request() of a connection, but several
    -- connections may pass it before any of them calls request(): it counts
    -- the requests it lets through itself.
    delay = function()
      granted = granted + 1
      if granted > mine then return 3600000 end
      return 0
    end
    response = function(status)
      answered = answered + 1
      if status == 201 then created = created + 1 end
      if answered == mine then
        io.write("thread done\n")
        io.flush()
        wrk.thread:stop()
      end
    end
  end
end

function request()
  local i = id + n * nthreads
  n = n + 1
  return wrk.format(method, prefix .. (i % keys), nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local created = 0
  for _, thread in ipairs(threads) do created = created + (thread:get("created") or 0) end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"bad_status":%d,"p50_us":%d,"p99_us":%d,"created":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), created))
end
