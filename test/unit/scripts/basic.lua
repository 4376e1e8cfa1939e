-- exercised by test_script.c: every accessor, read and write
seen = {}
function load() seen.load = true end
function request(flow)
  local r = flow.request
  seen.method, seen.host, seen.port, seen.path, seen.url = r.method, r.host, r.port, r.path, r.url
  seen.ct = r.headers["content-type"]          -- case-insensitive
  seen.multi = r.headers["X-Multi"]            -- joined with ", "
  seen.all = #r.headers:get_all("x-multi")
  seen.text = r.text                           -- decoded from gzip
  r.headers["X-Added"] = "yes"
  r.headers:add("X-Multi", "3")
  r.headers["X-Gone"] = nil
  r.text = "changed body"                      -- re-encoded with gzip
  flow.metadata.seen = "request"
  flow.metadata.n = 3
  flow.comment = "hello"
  flow.marked = true
end
function response(flow)
  flow.response.status_code = 201
  flow.response.headers["X-Resp"] = "1"
  flow.response.content = "new"
end
