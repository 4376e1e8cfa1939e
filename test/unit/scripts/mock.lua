function request(flow)
  if flow.request.path == "/mock" then
    flow.response = mitm.response(418, {["Content-Type"] = "text/plain"}, "teapot")
  elseif flow.request.path == "/kill" then
    flow:kill()
  end
end
