-- hooks that never end on their own: the time limit stops them
function request(flow)
  while true do end
end
function response(flow)
  -- catching the limit's error must not keep the hook running
  while true do pcall(function() while true do end end) end
end
function error(flow)
  flow.request.headers["X-Error-Hook"] = flow.error and flow.error.msg or "?"
end
