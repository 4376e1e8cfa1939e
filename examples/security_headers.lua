-- security_headers.lua: flag responses that miss security headers or set
-- cookies without Secure and HttpOnly, so that a CI job can fail on them:
--   mitmlua -s examples/security_headers.lua --set fail_on='~meta insecure'
-- Each flagged flow carries flow.metadata.insecure (what is wrong), which
-- the dump, the jsonl console and `-r FILE '~meta insecure'` show later.
local required = {"X-Content-Type-Options", "Content-Security-Policy"}

local function response(flow)
  local problems = {}
  local h = flow.response.headers
  for _, name in ipairs(required) do
    if not h[name] then problems[#problems + 1] = "no " .. name end
  end
  if flow.request.scheme == "https" and not h["Strict-Transport-Security"] then
    problems[#problems + 1] = "no Strict-Transport-Security"
  end
  -- cookie_items: every Set-Cookie as {name, value, attrs}, attribute
  -- names lower-cased (lua/mitm.lua parses them)
  for _, c in ipairs(flow.response.cookie_items) do
    if not c[3].secure then problems[#problems + 1] = "cookie " .. c[1] .. " without Secure" end
    if not c[3].httponly then problems[#problems + 1] = "cookie " .. c[1] .. " without HttpOnly" end
  end
  if #problems > 0 then
    flow.metadata.insecure = table.concat(problems, ", ")
    mitm.log.warn(flow.request.url .. ": " .. flow.metadata.insecure)
  end
end

return {
  response = response,
}
