-- errors.lua: log failed flows.  A script that defines an `error` hook hides
-- Lua's own error() inside that script: call _G.error(...) to raise.
function error(flow)
  mitm.log.warn(flow.request.url .. " failed: " .. flow.error.msg)
end
