-- wrk script: replays the requests listed in a file and prints the results as one JSON line.
-- Usage: wrk ... -s bench/requests.lua <url> -- <file> [<api key>]
-- Each line of <file> is METHOD<TAB>PATH[<TAB>JSON BODY]; requests are drawn at random.
-- With an API key, every request carries it as a bearer token.

local requests = {}

function init(args)
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    local headers = {}
    if args[2] and args[2] ~= "" then
      headers["Authorization"] = "Bearer " .. args[2]
    end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f,'
      .. ' "mean_ms": %.3f, "max_ms": %.3f, "errors": %d, "bad_status": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
