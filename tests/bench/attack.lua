-- wrk script for `make bench`: POST /v1/attacks with the request bodies of
-- the file named by $BENCH_ATTACK_BODIES (one JSON body a line, written by
-- http_bench.py attack-bodies), each connection's requests cycling through
-- them, and print the count, latency percentiles and failures in a line
-- run.sh keeps. Bodies are read once, so the load generator costs the
-- daemon's cores little beside the attacks.
local bodies = {}
for line in io.lines(os.getenv("BENCH_ATTACK_BODIES")) do
   bodies[#bodies + 1] = line
end
assert(#bodies > 0, "no request bodies")
local next_body = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
   next_body = next_body % #bodies + 1
   return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
   io.write(string.format(
      "BENCH {\"requests\": %d, \"seconds\": %.3f, \"attacks_per_s\": %.2f, " ..
      "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"bodies\": %d, \"errors\": %d, \"non2xx\": %d}\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, #bodies,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status))
end
