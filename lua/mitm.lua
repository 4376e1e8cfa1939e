-- lua/mitm.lua — the part of mitmlua's Lua API that is written in Lua.
--
-- The build compiles this file to LuaJIT bytecode inside the binary, and
-- script.c runs it once in every Lua state, before any user script, with
-- the C half of the global `mitm` table as its argument.  It adds pure
-- functions to `mitm` (URL and form encoding) and returns the computed
-- fields of requests and responses:
--
--   get[name](msg)        -> value      flow.request.query
--   set[name](msg, value)               flow.request.query = {...}
--   methods[name](msg, ...)             flow.response:json()
--
-- The C accessors every hook uses (method, host, headers, content, ...) stay
-- in C; what lives here is parsing that scripts ask for now and then, where
-- Lua is short to read and cannot overrun a buffer.  Names follow
-- mitmproxy's (query, cookies, urlencoded_form, json()).

local mitm = ...

local byte, char, find, format, gsub, lower, match, sub =
  string.byte, string.char, string.find, string.format, string.gsub, string.lower, string.match, string.sub
local concat = table.concat
local type, tostring, tonumber, pairs, ipairs, error = type, tostring, tonumber, pairs, ipairs, error

-- ---- URL encoding (RFC 3986 §2.1, and HTML forms' + for space) ----------

-- %XX sequences decoded; with `plus`, "+" is a space (form encoding).
-- A "%" not followed by two hex digits stays as it is, as Python's unquote.
local function unquote(s, plus)
  if plus then s = gsub(s, "%+", " ") end
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- Every byte but RFC 3986's unreserved ones, and those in `safe`, becomes
-- %XX.  `safe` defaults to "/" as in Python's urllib.parse.quote.
local function quote(s, safe)
  safe = safe or "/"
  return (gsub(tostring(s), "[^%w%-%._~]", function(c)
    if safe ~= "" and find(safe, c, 1, true) then return c end
    return format("%%%02X", byte(c))
  end))
end

-- "a=1&b=2&a=3" -> {{"a","1"}, {"b","2"}, {"a","3"}}, names and values
-- decoded.  Empty pieces are skipped; "a" alone has the value "".  As
-- mitmproxy (Python's parse_qsl and urlencode), queries and forms alike
-- take "+" for a space.
local function parse_query(s, plus)
  local items = {}
  if not s or s == "" then return items end
  for piece in s:gmatch("[^&]+") do
    local eq = find(piece, "=", 1, true)
    local k, v
    if eq then k, v = sub(piece, 1, eq - 1), sub(piece, eq + 1) else k, v = piece, "" end
    items[#items + 1] = {unquote(k, plus), unquote(v, plus)}
  end
  return items
end

-- Items as parse_query returns them, or a table name -> value (a value may
-- be a list of values, sent in order), back to "a=1&b=2".  A map's names
-- are sorted so that the result does not depend on Lua's table order.
local function items_of(t, what)
  if type(t) ~= "table" then error(what .. " must be a table", 3) end
  if #t > 0 then
    for i, kv in ipairs(t) do
      if type(kv) ~= "table" or kv[1] == nil or kv[2] == nil then
        error(format("%s item %d must be {name, value}", what, i), 3)
      end
    end
    return t
  end
  local names = {}
  for k in pairs(t) do names[#names + 1] = tostring(k) end
  table.sort(names)
  local items = {}
  for _, k in ipairs(names) do
    local v = t[k]
    if type(v) == "table" then
      for _, one in ipairs(v) do items[#items + 1] = {k, one} end
    else
      items[#items + 1] = {k, v}
    end
  end
  return items
end

local function encode_query(t, plus)
  local out = {}
  for i, kv in ipairs(items_of(t, "query")) do
    local k, v = quote(tostring(kv[1]), ""), quote(tostring(kv[2]), "")
    if plus then k, v = gsub(k, "%%20", "+"), gsub(v, "%%20", "+") end
    out[i] = k .. "=" .. v
  end
  return concat(out, "&")
end

-- name -> first value, as mitmproxy's MultiDictView answers view[name].
local function first_values(items)
  local t = {}
  for _, kv in ipairs(items) do
    if t[kv[1]] == nil then t[kv[1]] = kv[2] end
  end
  return t
end

-- mitm.url: quote(s [, safe]), unquote(s [, plus]), and parse_query(s) /
-- encode_query(t) that take "+" for a space unless told `false`.
mitm.url = {
  quote = quote,
  unquote = unquote,
  parse_query = function(s, plus) return parse_query(s, plus ~= false) end,
  encode_query = function(t, plus) return encode_query(t, plus ~= false) end,
}

-- ---- cookies (RFC 6265) -------------------------------------------------

local function trim(s) return match(s, "^%s*(.-)%s*$") end

-- Cookie: a=1; b=2  ->  {{"a","1"}, {"b","2"}}, over every Cookie field.
local function request_cookie_items(req)
  local items = {}
  for _, line in ipairs(req.headers:get_all("Cookie")) do
    for piece in line:gmatch("[^;]+") do
      local k, v = match(piece, "^%s*([^=]-)%s*=%s*(.-)%s*$")
      if k and k ~= "" then items[#items + 1] = {k, v} end
    end
  end
  return items
end

-- Set-Cookie: a=1; Path=/; HttpOnly  ->  {"a", "1", {path="/", httponly=true}}.
-- Attribute names are lower-cased so that checks read `attrs.secure`.
local function parse_set_cookie(line)
  local first, rest = match(line, "^([^;]*)(.*)$")
  local k, v = match(first, "^%s*([^=]-)%s*=%s*(.-)%s*$")
  if not k or k == "" then return nil end
  local attrs = {}
  for piece in rest:gmatch("[^;]+") do
    local an, av = match(piece, "^%s*([^=]-)%s*=%s*(.-)%s*$")
    if an then
      attrs[lower(an)] = av
    else
      an = trim(piece)
      if an ~= "" then attrs[lower(an)] = true end
    end
  end
  return {k, v, attrs}
end

local function response_cookie_items(resp)
  local items = {}
  for _, line in ipairs(resp.headers:get_all("Set-Cookie")) do
    local c = parse_set_cookie(line)
    if c then items[#items + 1] = c end
  end
  return items
end

-- ---- the request's and the response's computed fields --------------------

local function split_path(req)
  local path = req.path
  local q = find(path, "?", 1, true)
  if q then return sub(path, 1, q - 1), sub(path, q + 1) end
  return path, nil
end

local function is_form(msg)
  local ct = msg.headers["Content-Type"]
  return ct ~= nil and find(lower(ct), "application/x-www-form-urlencoded", 1, true) ~= nil
end

local function json_of(msg)
  local text = msg.text
  if text == nil or text == "" then error("no content to decode as JSON", 2) end
  return mitm.json.decode(text)
end

local request = {get = {}, set = {}, methods = {json = json_of}}

function request.get.query_items(req)
  local _, q = split_path(req)
  return parse_query(q, true)
end

function request.get.query(req) return first_values(request.get.query_items(req)) end

function request.set.query(req, t)
  local base = split_path(req)
  local q = encode_query(t, true)
  req.path = q == "" and base or base .. "?" .. q
end
request.set.query_items = request.set.query

function request.get.path_components(req)
  local base = split_path(req)
  local parts = {}
  for p in base:gmatch("[^/]+") do parts[#parts + 1] = unquote(p) end
  return parts
end

function request.set.path_components(req, parts)
  if type(parts) ~= "table" then error("path_components must be a list", 2) end
  local enc = {}
  for i, p in ipairs(parts) do enc[i] = quote(tostring(p), "") end
  local _, q = split_path(req)
  req.path = "/" .. concat(enc, "/") .. (q and "?" .. q or "")
end

function request.get.cookie_items(req) return request_cookie_items(req) end
function request.get.cookies(req) return first_values(request_cookie_items(req)) end

function request.set.cookies(req, t)
  local out = {}
  for i, kv in ipairs(items_of(t, "cookies")) do out[i] = tostring(kv[1]) .. "=" .. tostring(kv[2]) end
  req.headers:remove("Cookie")
  if #out > 0 then req.headers["Cookie"] = concat(out, "; ") end
end
request.set.cookie_items = request.set.cookies

-- As mitmproxy: the form is read only when Content-Type says it is one.
function request.get.urlencoded_form_items(req)
  if not is_form(req) then return {} end
  return parse_query(req.text, true)
end

function request.get.urlencoded_form(req) return first_values(request.get.urlencoded_form_items(req)) end

function request.set.urlencoded_form(req, t)
  req.headers["Content-Type"] = "application/x-www-form-urlencoded"
  req.text = encode_query(t, true)
end
request.set.urlencoded_form_items = request.set.urlencoded_form

local response = {get = {}, set = {}, methods = {json = json_of}}

function response.get.cookie_items(resp) return response_cookie_items(resp) end

-- name -> {value = "...", attrs = {...}}, the first Set-Cookie of each name.
function response.get.cookies(resp)
  local t = {}
  for _, c in ipairs(response_cookie_items(resp)) do
    if t[c[1]] == nil then t[c[1]] = {value = c[2], attrs = c[3]} end
  end
  return t
end

return {request = request, response = response}
