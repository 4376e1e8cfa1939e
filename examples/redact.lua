-- redact.lua: keep secrets out of the recording.  The request has gone to
-- the server untouched by the time the response hook runs, so what is
-- changed here is only what the console, -w and hardump keep.
--   mitmlua -s examples/redact.lua -w flows.mitmlua
local secret_headers = {"Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key"}
local secret_fields = {"password", "token", "api_key", "secret"}

local function redact_body(msg)
  local text = msg.text
  if not text or #text == 0 then return end
  local out = text
  for _, field in ipairs(secret_fields) do
    out = out:gsub('("' .. field .. '"%s*:%s*")[^"]*(")', "%1REDACTED%2")  -- JSON
    out = out:gsub("(" .. field .. "=)[^&]*", "%1REDACTED")                    -- forms, queries
  end
  if out ~= text then msg.text = out end
end

local function redact(flow)
  for _, name in ipairs(secret_headers) do
    if flow.request.headers[name] then flow.request.headers[name] = "REDACTED" end
  end
  for _, field in ipairs(secret_fields) do
    flow.request.path = flow.request.path:gsub("([?&]" .. field .. "=)[^&]*", "%1REDACTED")
  end
  redact_body(flow.request)
  if flow.response then
    if flow.response.headers["Set-Cookie"] then flow.response.headers["Set-Cookie"] = "REDACTED" end
    redact_body(flow.response)
  end
end

-- failed flows are recorded too
return { response = redact, error = redact }
