-- block.lua: refuse requests to hosts on a deny list, and kill tracking pixels.
local deny = { ["ads.example.com"] = true, ["tracker.example.net"] = true }

local function request(flow)
  if deny[flow.request.host] then
    flow.response = mitm.response(403, {["Content-Type"] = "text/plain"}, "blocked by mitmlua\n")
  elseif flow.request.path:match("^/pixel%.gif") then
    flow:kill()   -- the client sees the connection close
  end
end

return {
  request = request,
}
