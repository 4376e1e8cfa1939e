-- mock.lua: answer one API endpoint from the script; everything else goes upstream.
local function request(flow)
  if flow.request.method == "GET" and flow.request.path == "/api/user/1" then
    flow.response = mitm.response(200, {{"Content-Type", "application/json"}, {"X-Mocked", "1"}},
                                  '{"id": 1, "name": "Ada"}')
  end
end

return {
  request = request,
}
