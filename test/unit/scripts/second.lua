-- runs after basic.lua: sees what it did
function request(flow)
  flow.request.headers["X-Second-Saw"] = flow.request.headers["X-Added"] or "nothing"
end
