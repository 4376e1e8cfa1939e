function request(flow)
  local s = 0
  for i = 1, 2000 do s = s + (i % 7) * 3 end
  local p = flow.request.path
  local t = {}
  for w in p:gmatch("[^/?=]+") do t[#t + 1] = w:upper() end
  flow.request.headers["X-Sum"] = tostring(s) .. table.concat(t, ",")
end
