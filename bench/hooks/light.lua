function request(flow)
  local r = flow.request
  if r.host == "example.com" then r.headers["X-Seen"] = "1" end
end
