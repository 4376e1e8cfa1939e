-- hooks for test_flowrun: what each does depends on the request's path.
-- What the C test cannot see on the flow (hooks that ran after it was
-- freed, how often a hook ran) goes to the file named by FLOWRUN_LOG.
local function log(...)
  local f = assert(io.open(os.getenv("FLOWRUN_LOG"), "a"))
  f:write(table.concat({...}, " "), "\n")
  f:close()
end

local hooks = {}

function hooks.requestheaders(flow)
  log("requestheaders", flow.request.path)
end

function hooks.request(flow)
  local p = flow.request.path
  if p == "/answer" then
    flow.response = mitm.response(201, {["X-Made"] = "1"}, "made")
  elseif p == "/kill" then
    flow:kill()
  elseif p == "/sleep" then
    mitm.sleep(0.05)
    flow.request.headers["X-Slept"] = "1"
  elseif p == "/intercept-resume" then
    flow:intercept()
    mitm.timer(0.05, function() flow:resume() end)
  elseif p == "/intercept-kill" then
    flow:intercept()
    mitm.timer(0.05, function() flow:kill() end)
  elseif p == "/spin" then
    while true do end
  elseif p == "/sleep-long" then
    mitm.sleep(0.2)
    local n = 0
    for i = 1, 1000 do n = n + i end
    flow.request.headers["X-Sum"] = tostring(n)
  end
end

function hooks.response(flow)
  if flow.request.path == "/remove" then
    -- the API refuses to take the response away
    local ok = pcall(function() flow.response = nil end)
    log("remove", ok and "allowed" or "refused")
  end
end

function hooks.error(flow)
  log("error", flow.request.path, flow.error and flow.error.msg or "?")
end

return hooks
