-- Gives every request its own resource id (thread number, then a counter), so the locks the
-- service takes are never contended, and prints the summary as one JSON line.
-- Usage: wrk ... -s distinct.lua http://HOST:PORT -- /route/prefix-

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

function init(args)
  route = args[1] or "/bare/"
  counter = 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", route .. thread_number .. "-" .. counter)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
