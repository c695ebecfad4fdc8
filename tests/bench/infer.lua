-- wrk script for `make bench`: POST the KServe v2 infer request whose body
-- run.sh wrote to the file named by $BENCH_INFER_BODY, and print the
-- latency percentiles in a line run.sh parses.
local f = assert(io.open(os.getenv("BENCH_INFER_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
   io.write(string.format(
      "BENCH {\"requests\": %d, \"seconds\": %.3f, \"rps\": %.1f, \"p50_ms\": %.3f, " ..
      "\"p99_ms\": %.3f, \"errors\": %d, \"non2xx\": %d}\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      summary.errors.status))
end
