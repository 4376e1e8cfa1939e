function request(flow)
  local ok, err = pcall(function() flow.request.headers["X-Evil"] = "a\r\nInjected: 1" end)
  flow.request.headers["X-Smuggle-Refused"] = ok and "no" or "yes"
end
