#!/usr/bin/python3
"""Core: Lua hooks (-s), end to end.  Under PROXY=mitmdump each script is
replaced by its Python equivalent, so the checks themselves are verified
against mitmdump; what mitmdump cannot do (stop on a script that does not
compile) is skipped there.

Hooks rewrite requests and responses (headers case-insensitively, decoded
content re-encoded), mitm.response() answers without the upstream,
flow:kill(), error hook on a refused upstream, several -s in order, hook
order, a raising hook is reported with file:line and the flow goes on."""
import gzip
import json
import os
import re
import urllib.parse

import harness as H
from harness import test, fixture, script, lua_quote
from backend import Backend, payload


@fixture
def backend():
    return Backend().start()


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


def proxy_with(*scripts, args=()):
    a = []
    for s in scripts:
        a += ["-s", s]
    return H.Proxy(a + list(args)).start()


def echo(r):
    assert r.status == 200, r
    return json.loads(r.body)


def hdrs(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


@test
def request_hook_rewrites_headers():
    s = script("reqhdr", lua='''
function request(f)
  f.request.headers["X-Added-By-Hook"] = "yes"
  -- reads are case-insensitive
  f.request.headers["X-UA-Seen"] = f.request.headers["user-agent"]
  f.request.headers:add("X-Multi", "1")
  f.request.headers:add("X-Multi", "2")
  f.request.headers["X-Count"] = tostring(#f.request.headers:get_all("x-multi"))
  f.request.headers:remove("x-remove-me")
end
''', py='''
def request(flow):
    h = flow.request.headers
    h["X-Added-By-Hook"] = "yes"
    h["X-UA-Seen"] = h["user-agent"]
    h.add("X-Multi", "1")
    h.add("X-Multi", "2")
    h["X-Count"] = str(len(h.get_all("x-multi")))
    del h["x-remove-me"]
''')
    p = proxy_with(s)
    doc = echo(H.curl(backend().url("/echo"), proxy=p, headers=["X-Remove-Me: 1"]))
    assert hdrs(doc, "X-Added-By-Hook") == ["yes"], doc
    assert hdrs(doc, "X-UA-Seen") == hdrs(doc, "User-Agent") and hdrs(doc, "X-UA-Seen"), doc
    assert hdrs(doc, "X-Multi") == ["1", "2"], doc
    assert hdrs(doc, "X-Count") == ["2"], doc
    assert hdrs(doc, "X-Remove-Me") == [], doc


@test
def flow_fields_visible():
    s = script("fields", lua='''
function response(f)
  local q = f.request
  f.response.headers["X-Req"] = table.concat({q.method, q.scheme, q.host,
      tostring(q.port), q.path, q.http_version}, " ")
  f.response.headers["X-Url"] = q.url
  f.response.headers["X-Resp"] = f.response.status_code .. " " .. f.response.reason
  f.response.headers["X-Id"] = (f.id and #f.id > 0) and "yes" or "no"
end
''', py='''
def response(flow):
    q = flow.request
    flow.response.headers["X-Req"] = " ".join([q.method, q.scheme, q.host,
        str(q.port), q.path, q.http_version])
    flow.response.headers["X-Url"] = q.url
    flow.response.headers["X-Resp"] = "%d %s" % (flow.response.status_code, flow.response.reason)
    flow.response.headers["X-Id"] = "yes" if flow.id else "no"
''')
    p = proxy_with(s)
    b = backend()
    r = H.curl(b.url("/status/200?q=1"), proxy=p)
    assert r.status == 200, r
    h = lambda n: H.header(r.headers, n)
    assert h("X-Req") == "GET http 127.0.0.1 %d /status/200?q=1 HTTP/1.1" % b.port, r.headers
    assert h("X-Url") == b.url("/status/200?q=1"), r.headers
    assert h("X-Resp") == "200 OK", r.headers
    assert h("X-Id") == "yes"


@test
def response_hook_rewrites_body():
    s = script("respbody", lua='''
function response(f)
  if f.request.path == "/bytes/64" then
    f.response.content = "replaced " .. #f.response.content
  end
  if f.request.path == "/gzip" then
    -- text is decoded from gzip; setting it re-encodes
    f.response.text = (f.response.text:gsub("gzip", "GZIP"))
  end
end
''', py='''
def response(flow):
    if flow.request.path == "/bytes/64":
        flow.response.content = b"replaced %d" % len(flow.response.content)
    if flow.request.path == "/gzip":
        flow.response.text = flow.response.text.replace("gzip", "GZIP")
''')
    p = proxy_with(s)
    r = H.curl(backend().url("/bytes/64"), proxy=p)
    assert r.rc == 0 and r.body == b"replaced 64", r
    assert H.header(r.headers, "Content-Length") == "11", r.headers
    r = H.curl(backend().url("/gzip"), proxy=p)
    assert r.rc == 0 and H.header(r.headers, "Content-Encoding") == "gzip", r
    text = gzip.decompress(r.body).decode()
    assert "GZIP GZIP" in text and "gzip" not in text, text
    # other flows untouched
    r = H.curl(backend().url("/bytes/65"), proxy=p)
    assert r.body == payload(65)


@test
def mock_response_skips_upstream():
    s = script("mock", lua='''
function request(f)
  if f.request.path == "/mocked" then
    f.response = mitm.response(201, {["Content-Type"] = "text/plain", ["X-Mock"] = "1"},
                               "from the hook")
  end
end
''', py='''
from mitmproxy import http
def request(flow):
    if flow.request.path == "/mocked":
        flow.response = http.Response.make(201, b"from the hook",
                                           {"Content-Type": "text/plain", "X-Mock": "1"})
''')
    p = proxy_with(s)
    b = backend()
    b.clear()
    r = H.curl([b.url("/mocked"), b.url("/echo")], proxy=p)
    assert r.blocks[0][0] == 201 and H.header(r.blocks[0][2], "X-Mock") == "1", r.blocks
    assert r.body.startswith(b"from the hook"), r.body
    assert b.paths() == ["/echo"], b.paths()


@test
def kill_drops_the_flow():
    s = script("kill", lua='''
function request(f)
  if f.request.path == "/killed" then f:kill() end
end
''', py='''
def request(flow):
    if flow.request.path == "/killed":
        flow.kill()
''')
    p = proxy_with(s)
    b = backend()
    b.clear()
    r = H.curl(b.url("/killed"), proxy=p)
    assert r.rc != 0 and r.status is None, r
    r = H.curl(b.url("/bytes/5"), proxy=p)
    assert r.status == 200 and r.body == payload(5)
    assert b.paths() == ["/bytes/5"], b.paths()


@test
def error_hook_on_refused_upstream():
    out = os.path.join(H.tmpdir("errhook"), "error.txt")
    s = script("errhook", lua='''
function error(f)
  local fh = io.open(%s, "w")
  fh:write(f.request.url, "\\n", f.error.msg)
  fh:close()
end
''' % lua_quote(out), py='''
def error(flow):
    with open(%r, "w") as fh:
        fh.write(flow.request.url + "\\n" + flow.error.msg)
''' % out)
    p = proxy_with(s)
    url = "http://127.0.0.1:%d/refused" % H.free_port()
    r = H.curl(url, proxy=p)
    assert r.status == 502, r
    assert H.wait_for(lambda: os.path.exists(out) and H.read(out), 5), "error hook did not run"
    lines = H.read(out).split("\n", 1)
    assert lines[0] == url and lines[1].strip(), lines


@test
def scripts_run_in_order():
    a = script("a", lua='''
function request(f)
  f.request.headers["X-Order"] = (f.request.headers["X-Order"] or "") .. "a"
end
''', py='''
def request(flow):
    flow.request.headers["X-Order"] = flow.request.headers.get("X-Order", "") + "a"
''')
    b = script("b", lua='''
function request(f)
  f.request.headers["X-Order"] = (f.request.headers["X-Order"] or "") .. "b"
end
''', py='''
def request(flow):
    flow.request.headers["X-Order"] = flow.request.headers.get("X-Order", "") + "b"
''')
    p = proxy_with(a, b)
    assert hdrs(echo(H.curl(backend().url("/echo"), proxy=p)), "X-Order") == ["ab"]
    p.stop()
    p = proxy_with(b, a)
    assert hdrs(echo(H.curl(backend().url("/echo"), proxy=p)), "X-Order") == ["ba"]


@test
def hook_order_for_https():
    log = os.path.join(H.tmpdir("order"), "hooks.txt")
    hooks = ["load", "connect", "requestheaders", "request", "responseheaders", "response"]
    lua = "local function note(s) local fh = io.open(%s, 'a'); fh:write(s, '\\n'); fh:close() end\n" % lua_quote(log)
    py = "def note(s):\n    with open(%r, 'a') as fh:\n        fh.write(s + '\\n')\n" % log
    for h in hooks:
        lua += "function %s(f) note(%s) end\n" % (h, lua_quote(h))
        pyname = {"connect": "http_connect"}.get(h, h)
        py += "def %s(arg):\n    note(%r)\n" % (pyname, h)
    s = script("order", lua=lua, py=py)
    p = proxy_with(s, args=["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert])
    r = H.curl(tls_backend().url("/echo"), proxy=p, cacert=p.ca())
    assert r.status == 200, r
    assert H.wait_for(lambda: H.read(log).count("\n") >= len(hooks), 5)
    assert H.read(log).split() == hooks, H.read(log)


@test
def log_api():
    s = script("log", lua='''
function request(f)
  mitm.log.info("seen-by-lua " .. f.request.path)
end
''', py='''
from mitmproxy import ctx
def request(flow):
    ctx.log.info("seen-by-lua " + flow.request.path)
''')
    p = proxy_with(s)
    H.curl(backend().url("/echo?log=1"), proxy=p)
    assert p.wait_output("seen-by-lua /echo?log=1", 5, stream="both"), p.describe()


@test
def raising_hook_reported_flow_goes_on():
    s = script("raiser", lua='''
function request(f)
  error("boom from hook")
end
''', py='''
def request(flow):
    raise ValueError("boom from hook")
''')
    p = proxy_with(s)
    r = H.curl(backend().url("/bytes/100"), proxy=p)
    assert r.status == 200 and r.body == payload(100), r
    if H.IS_MITMDUMP:  # a Python traceback, on stdout
        where = re.compile(r'raiser\.py", line 3')
        assert p.wait_output(where, 5, stream="both"), p.describe()
    else:
        where = re.compile(r"raiser\.lua:3:.*boom from hook")
        assert p.wait_output(where, 5, stream="stderr"), p.describe()
    r = H.curl(backend().url("/bytes/7"), proxy=p)
    assert r.status == 200 and r.body == payload(7), r


@test
def lua_helpers_query_cookies_form_json():
    """The fields written in Lua (lua/mitm.lua) answer as mitmproxy's do:
    query and form (+ is a space), cookies both ways, path_components,
    json(); setting query rewrites the path as mitmproxy encodes it."""
    s = script("helpers", lua=r"""
function request(f)
  local r = f.request
  if r.path:find("^/echo") then
    r.headers["X-Q-A"] = r.query["a"]
    r.headers["X-Q-N"] = tostring(#r.query_items)
    r.headers["X-Q-Sp"] = r.query["sp"]
    r.headers["X-Cookie-S"] = r.cookies["s"]
    r.headers["X-Form-F"] = r.urlencoded_form["f"] or "none"
    r.headers["X-Comps"] = table.concat(r.path_components, ",")
    r.query = {{"x", "1 2"}, {"y", "a&b"}, {"y", "c"}}
  end
end
function response(f)
  local rs = f.response
  if f.request.path:find("^/echo") then
    rs.headers["X-Json-Method"] = rs:json()["method"]
  else
    local c = rs.cookies["sid"]
    rs.headers["X-Sid"] = c.value
    rs.headers["X-Sid-HttpOnly"] = tostring(c.attrs.httponly ~= nil)
    rs.headers["X-Sid-Secure"] = tostring(c.attrs.secure ~= nil)
    rs.headers["X-Sid-Path"] = c.attrs.path
  end
end
""", py=r"""
def request(flow):
    r = flow.request
    if r.path.startswith("/echo"):
        r.headers["X-Q-A"] = r.query["a"]
        r.headers["X-Q-N"] = str(len(r.query.items(multi=True)))
        r.headers["X-Q-Sp"] = r.query["sp"]
        r.headers["X-Cookie-S"] = r.cookies["s"]
        r.headers["X-Form-F"] = r.urlencoded_form.get("f", "none")
        r.headers["X-Comps"] = ",".join(r.path_components)
        r.query = [("x", "1 2"), ("y", "a&b"), ("y", "c")]

def response(flow):
    rs = flow.response
    if flow.request.path.startswith("/echo"):
        rs.headers["X-Json-Method"] = rs.json()["method"]
    else:
        value, attrs = rs.cookies["sid"]
        rs.headers["X-Sid"] = value
        rs.headers["X-Sid-HttpOnly"] = str("httponly" in {k.lower() for k in attrs}).lower()
        rs.headers["X-Sid-Secure"] = str("secure" in {k.lower() for k in attrs}).lower()
        rs.headers["X-Sid-Path"] = attrs["Path"]
""")
    p = proxy_with(s)
    b = backend()
    r = H.curl(b.url("/echo/a%20b/c?a=1&b=2&a=3&sp=x+y"), proxy=p,
               headers=["Cookie: s=tok; t=2", "Content-Type: application/x-www-form-urlencoded"],
               data=b"f=a+b%21&g=1")
    doc = echo(r)
    assert hdrs(doc, "X-Q-A") == ["1"], doc
    assert hdrs(doc, "X-Q-N") == ["4"], doc
    assert hdrs(doc, "X-Q-Sp") == ["x y"], doc
    assert hdrs(doc, "X-Cookie-S") == ["tok"], doc
    assert hdrs(doc, "X-Form-F") == ["a b!"], doc
    assert hdrs(doc, "X-Comps") == ["echo,a b,c"], doc
    assert doc["path"] == "/echo/a%20b/c?x=1+2&y=a%26b&y=c", doc["path"]
    assert H.header(r.headers, "X-Json-Method") == "POST", r.headers
    setc = "sid=abc; Path=/app; HttpOnly"
    r = H.curl(b.url("/headers?Set-Cookie=" + urllib.parse.quote(setc)), proxy=p)
    assert r.status == 200, r
    assert H.header(r.headers, "X-Sid") == "abc", r.headers
    assert H.header(r.headers, "X-Sid-HttpOnly") == "true", r.headers
    assert H.header(r.headers, "X-Sid-Secure") == "false", r.headers
    assert H.header(r.headers, "X-Sid-Path") == "/app", r.headers


@test
def mitm_json_and_url_functions():
    """mitm.json and mitm.url (lua/mitm.lua and jansson): round trips,
    JSON null kept as mitm.json.null so arrays keep their length, and a
    clear error for invalid JSON that the hook can catch."""
    H.skip_if_mitmdump("mitm.json and mitm.url are mitmlua's Lua API")
    s = script("jsonurl", lua=r"""
function request(f)
  local t = mitm.json.decode('{"a":[1,null,3],"b":{"c":"d"},"e":1.5}')
  local ok, err = pcall(mitm.json.decode, '{"x": ')
  local out = {
    n = #t.a, null = (t.a[2] == mitm.json.null), c = t.b.c, e = t.e,
    enc = mitm.json.encode({b = 1, a = {1, 2}, s = "x\"y"}),
    bad = (not ok) and err:match("invalid JSON at line %d+ column %d+") ~= nil,
    q = mitm.url.quote("a b/c&d"), q2 = mitm.url.quote("a/b", ""),
    u = mitm.url.unquote("a%20b+c", true),
    qs = mitm.url.encode_query({z = "1", a = {"x y", "2"}}),
  }
  f.response = mitm.response(200, {["Content-Type"] = "application/json"}, mitm.json.encode(out))
end
""", py="")
    p = proxy_with(s)
    r = H.curl(backend().url("/any"), proxy=p)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["n"] == 3 and doc["null"] is True and doc["c"] == "d" and doc["e"] == 1.5, doc
    assert doc["enc"] == '{"a":[1,2],"b":1,"s":"x\\"y"}', doc
    assert doc["bad"] is True, doc
    assert doc["q"] == "a%20b/c%26d" and doc["q2"] == "a%2Fb", doc
    assert doc["u"] == "a b c", doc
    assert doc["qs"] == "a=x+y&a=2&z=1", doc


@test
def syntax_error_stops_startup():
    H.skip_if_mitmdump("keeps running when a script does not load")
    s = script("broken", lua='''
function request(f)
  local x = = 1
end
''', py="")
    p = H.Proxy(["-s", s])
    p.spawn()
    rc = p.wait(10)
    assert rc != 0, rc
    assert re.search(r"broken\.lua:3", p.stderr), p.stderr
    missing = H.Proxy(["-s", os.path.join(H.TMP, "no-such-script.lua")])
    missing.spawn()
    assert missing.wait(10) != 0
    assert "no-such-script.lua" in missing.stderr, missing.stderr


if __name__ == "__main__":
    H.main()
