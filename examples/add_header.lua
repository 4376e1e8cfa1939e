-- add_header.lua: tag every request, and mock one endpoint
local function request(flow)
  flow.request.headers["X-Seen-By"] = "mitmlua"
  if flow.request.path == "/health" then flow.response = mitm.response(200, {["Content-Type"]="text/plain"}, "ok") end
end

return {
  request = request,
}
