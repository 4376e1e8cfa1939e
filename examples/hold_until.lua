-- hold_until.lua: hold requests until a condition holds, then let them all
-- go in the order they came.  Here the condition is a file: a CI job starts
-- the program under test at once and touches the file when its fixtures are
-- loaded, so no request reaches the backend before it is ready.
--   HOLD_UNTIL_FILE=/tmp/fixtures-loaded mitmlua -s examples/hold_until.lua
-- flow:intercept() holds a flow (and its client) after the hook returns; a
-- mitm.timer checks the condition and flow:resume() lets a flow go on.
local path = os.getenv("HOLD_UNTIL_FILE") or "/tmp/mitmlua-ready"
local held, polling = {}, false

local function ready()
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local function poll()
  if not ready() then
    mitm.timer(0.1, poll)
    return
  end
  polling = false
  for _, flow in ipairs(held) do
    pcall(function() flow:resume() end)   -- a flow whose client left is gone
  end
  held = {}
end

return {
  request = function(flow)
    if ready() then return end
    flow:intercept()
    held[#held + 1] = flow
    if not polling then
      polling = true
      mitm.timer(0.1, poll)
    end
  end,
}
