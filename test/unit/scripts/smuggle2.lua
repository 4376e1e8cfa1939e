-- Every way a hook could put framing bytes into a message is refused.
local attempts = {
  function(f) f.request.headers["X-A"] = "a\0b" end,
  function(f) f.request.headers["X-A"] = "a\1b" end,
  function(f) f.request.headers["X-A"] = "a\127b" end,
  function(f) f.request.headers["X A"] = "v" end,
  function(f) f.request.headers:add("X-A", "a\nb") end,
  function(f) f.request.http_version = "HTTP/1.1\r\nX-Evil: 1" end,
  function(f) f.request.method = "GET / HTTP/1.1\r\n" end,
  function(f) f.request.path = "/a b" end,
  function(f) f.request.path = "/a\r\nX-Evil: 1" end,
  function(f) f.request.url = "http://example.com/a\r\nX-Evil: 1" end,
  function(f) f.request.host = "a\tb" end,
  function(f) f.request.host = "a\r\nb" end,
  function(f) f.request.headers = {["X-Evil"] = "a\rb"} end,
  function(f) f.response = mitm.response(200, {["X-Evil"] = "a\nb"}, "") end,
}
function request(flow)
  local refused = 0
  for i, a in ipairs(attempts) do
    if not pcall(a, flow) then refused = refused + 1 end
  end
  flow.request.headers["X-Refused"] = tostring(refused) .. "/" .. tostring(#attempts)
end
