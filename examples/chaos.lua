-- chaos.lua: fault injection for CI, in the manner of toxiproxy: delay some
-- requests by a few hundred milliseconds and answer others with 503, so a
-- test suite proves that its client retries and times out as it should.
--   mitmlua -s examples/chaos.lua
-- Rates and the delay come from the environment (defaults: 10 % delayed by
-- 200-500 ms, 5 % answered 503); CHAOS_SEED makes a run repeatable.
-- The delay is mitm.sleep: it waits without holding up other flows.
local delay_rate = tonumber(os.getenv("CHAOS_DELAY_RATE")) or 0.10
local fail_rate = tonumber(os.getenv("CHAOS_FAIL_RATE")) or 0.05
local min_ms = tonumber(os.getenv("CHAOS_DELAY_MIN_MS")) or 200
local max_ms = tonumber(os.getenv("CHAOS_DELAY_MAX_MS")) or 500
math.randomseed(tonumber(os.getenv("CHAOS_SEED")) or os.time())

return {
  request = function(flow)
    if math.random() < delay_rate then
      local ms = math.random(min_ms, max_ms)
      flow.metadata.chaos_delay_ms = ms
      mitm.sleep(ms / 1000)
    end
    if math.random() < fail_rate then
      flow.metadata.chaos = "503"
      flow.response = mitm.response(503, {["Content-Type"] = "text/plain", ["Retry-After"] = "1"},
                                    "chaos: service unavailable\n")
    end
  end,
}
