-- count_hosts.lua: count requests per host and print the table at shutdown.
-- Globals are per worker thread: with --set workers=N each worker counts its own.
local counts = {}

local function request(flow)
  counts[flow.request.host] = (counts[flow.request.host] or 0) + 1
end

local function done()
  for host, n in pairs(counts) do mitm.log.info(host .. ": " .. n) end
end

return {
  request = request,
  done = done,
}
