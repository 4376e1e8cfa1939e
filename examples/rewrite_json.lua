-- rewrite_json.lua: change a field in JSON responses.  `text` is decoded from
-- gzip/br/zstd and re-encoded on assignment, so compressed APIs work too.
local function response(flow)
  local ct = flow.response.headers["Content-Type"] or ""
  if ct:find("application/json", 1, true) then
    flow.response.text = flow.response.text:gsub('"debug"%s*:%s*false', '"debug": true')
  end
end

return {
  response = response,
}
