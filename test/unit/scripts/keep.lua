-- keeps a flow in a global: the next hook must get an error, not a crash
kept = nil
function request(flow)
  if kept then
    local ok, err = pcall(function() return kept.request.path end)
    flow.request.headers["X-Kept"] = ok and "alive" or tostring(err)
  end
  kept = flow
end
