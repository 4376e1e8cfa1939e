function request(flow)
  flow.request.headers["X-Before"] = "1"
  local t = nil
  return t.field      -- line 4: attempt to index a nil value
end
