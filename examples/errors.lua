-- errors.lua: log failed flows.  The hooks are fields of the table the
-- script returns, so Lua's own error() is still error() here.
return {
  error = function(flow)
    mitm.log.warn(flow.request.url .. " failed: " .. flow.error.msg)
  end,
}
