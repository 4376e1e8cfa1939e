-- auth_token.lua: fetch an OAuth-style token once, cache it until it
-- expires, and add it to every request: the program under test needs no
-- credentials of its own.
--   TOKEN_URL=https://auth.staging.example/token mitmlua -s examples/auth_token.lua
-- mitm.http.request waits without blocking the worker; flows that arrive
-- while the token is being fetched wait for that one fetch.  Each worker
-- thread has its own Lua state, so each fetches (and caches) its own token.
local token_url = os.getenv("TOKEN_URL") or "http://127.0.0.1:8081/token"
local client_id = os.getenv("TOKEN_CLIENT_ID") or "ci"
local token, expires_at, fetching = nil, 0, false

local function fetch()
  local r, err = mitm.http.request{
    method = "POST", url = token_url, timeout = 5,
    headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
    body = "grant_type=client_credentials&client_id=" .. mitm.url.quote(client_id),
  }
  if not r then return nil, err end
  if r.status_code ~= 200 then return nil, "token endpoint answered " .. r.status_code end
  local ok, doc = pcall(mitm.json.decode, r.content)
  if not ok or type(doc) ~= "table" or type(doc.access_token) ~= "string" then
    return nil, "token endpoint sent no access_token"
  end
  return doc.access_token, tonumber(doc.expires_in) or 300
end

local function get_token()
  while fetching do mitm.sleep(0.02) end   -- another flow is fetching it
  if token and os.time() < expires_at then return token end
  fetching = true
  local t, ttl = fetch()
  fetching = false
  if not t then
    mitm.log.warn("auth_token.lua: " .. ttl)
    return nil
  end
  token, expires_at = t, os.time() + math.max(ttl - 30, 1)
  return token
end

return {
  request = function(flow)
    local t = get_token()
    if t then flow.request.headers["Authorization"] = "Bearer " .. t end
  end,
}
