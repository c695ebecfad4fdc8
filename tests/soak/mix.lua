-- wrk script of `make soak` (tests/soak/run.sh): each connection cycles
-- through ten requests, five inferences (KServe v2 JSON, 784 floats), two
-- attacks answered at once, one asynchronous attack (202 and a Location)
-- and two reads of the last job it started; done() prints one line per
-- status code, "STATUS code count", summed over the threads.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local json = {["Content-Type"] = "application/json"}
local infer = '{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":[' ..
   string.rep("0.5,", 783) .. '0.5]}]}'
local attack = '{"model":"fc10-1e-4","image":{"dataset":"mnist","index":18},"target":3}'
local n = 0
local job = nil
statuses = {}

function request()
   n = n + 1
   local k = n % 10
   if k < 5 then
      return wrk.format("POST", "/v2/models/fc100-100-10/infer", json, infer)
   elseif k < 7 then
      return wrk.format("POST", "/v1/attacks", json, attack)
   elseif k == 7 then
      return wrk.format("POST", "/v1/attacks?async=true", json, attack)
   end
   return wrk.format("GET", job or "/v1/models")
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if headers["Location"] then
      job = headers["Location"]
   end
end

function done(summary, latency, requests)
   local all = {}
   for _, t in ipairs(threads) do
      for code, count in pairs(t:get("statuses")) do
         all[code] = (all[code] or 0) + count
      end
   end
   for code, count in pairs(all) do
      io.write(string.format("STATUS %d %d\n", code, count))
   end
   io.write(string.format("SUMMARY %d %.3f %.3f %.3f %d\n", summary.requests,
      summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.timeout))
end
