#!/usr/bin/python3
"""Hooks that wait, and the one flow pipeline they run in.

mitm.sleep yields to the worker's event loop: 500 concurrent requests whose
hook sleeps 1 s finish together with one worker, and a flow without a hook
is not held up by one that waits.  flow:intercept() holds a flow until
another hook or a mitm.timer resumes (or kills) it.  A client that leaves
while its flow waits ends that flow as an error (error hook, dump); SIGTERM
ends waiting flows as errors and still writes the dump.  script_timeout
counts running time, not waiting.  Scripts may return a table of hooks (or
a list of them), are reloaded when their file changes, and a reload that
does not compile keeps the previous version.  Server replay's kill behaves
the same on HTTP/1, HTTP/2 and client replay: one pipeline runs them all.

Lua only: mitmdump's equivalents are Python coroutines, a different API."""
import asyncio
import json
import os
import socket
import subprocess
import threading
import time

import harness as H
from harness import test, fixture
from backend import Backend


@fixture
def backend():
    return Backend().start()


def lua(name, text):
    d = H.tmpdir("script")
    path = os.path.join(d, name + ".lua")
    H.write(path, text)
    return path


def proxy(*args):
    return H.Proxy([str(a) for a in args]).start()


def get(p, path, headers=(), timeout=10):
    return H.curl(backend().url(path), proxy=p, headers=list(headers), max_time=timeout)


def read_back(dump, *extra):
    """The flows of a dump as mitmlua's JSON lines console prints them."""
    r = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "console_format=jsonl", "-q",
                        "--flow-detail", "1"] + list(extra),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]


async def _one(port, path):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(("GET http://127.0.0.1:9/%s HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
             "Connection: close\r\n\r\n" % path).encode())
    await w.drain()
    data = await asyncio.wait_for(r.read(), 20)
    w.close()
    return data


async def _many(port, n):
    return await asyncio.gather(*[_one(port, "n%d" % i) for i in range(n)])


@test(timeout=60)
def sleeping_hooks_do_not_block_the_worker():
    s = lua("sleep", '''
return {
  request = function(flow)
    mitm.sleep(1)
    flow.response = mitm.response(200, {["X-Path"] = flow.request.path}, "slept")
  end,
}
''')
    p = proxy("-s", s, "--set", "workers=1", "-q")
    t0 = time.monotonic()
    answers = asyncio.run(_many(p.port, 500))
    took = time.monotonic() - t0
    ok = [a for a in answers if a.startswith(b"HTTP/1.1 200") and a.endswith(b"slept")]
    assert len(ok) == 500, (len(ok), answers[:3])
    # one after another they would take 500 s; together they take one
    assert took < 3.0, took
    assert p.stop() == 0


@test(timeout=60)
def a_waiting_hook_does_not_delay_other_flows():
    s = lua("slowpath", '''
function request(flow)
  if flow.request.path:find("^/echo%?wait") then mitm.sleep(3) end
end
''')
    p = proxy("-s", s, "--set", "workers=1")
    slow = {}
    th = threading.Thread(target=lambda: slow.setdefault("r", get(p, "/echo?wait")))
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    r = get(p, "/echo?fast")
    fast = time.monotonic() - t0
    assert r.status == 200, r
    assert fast < 1.5, fast
    th.join(10)
    assert slow["r"].status == 200, slow
    assert p.stop() == 0


@test(timeout=60)
def http_request_from_a_hook_does_not_block_other_flows():
    s = lua("fetch", '''
return {
  request = function(flow)
    if not flow.request.path:find("fetch") then return end
    local r, err = mitm.http.request{url = %s, headers = {["X-From"] = "hook"}, timeout = 10}
    flow.request.headers["X-Slow-Status"] = r and tostring(r.status_code) or ("error: " .. err)
    local g, gerr = mitm.http.request{url = %s, timeout = 10}
    flow.request.headers["X-Gzip"] = g and mitm.json.decode(g.content).text:sub(1, 4) or gerr
    local bad, why = mitm.http.request{url = "http://127.0.0.1:1/", timeout = 5}
    flow.request.headers["X-Refused"] = bad == nil and why or "?"
  end,
}
''' % (H.lua_quote(backend().url("/slow/2")), H.lua_quote(backend().url("/gzip"))))
    p = proxy("-s", s, "--set", "workers=1")
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("r", get(p, "/echo?fetch")))
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert get(p, "/echo?plain").status == 200
    assert time.monotonic() - t0 < 1.5
    th.join(15)
    doc = json.loads(res["r"].body)
    h = {k: v for k, v in doc["headers"]}
    assert h.get("X-Slow-Status") == "200" and h.get("X-Gzip") == "gzip", h
    assert "Connection refused" in h.get("X-Refused", ""), h
    slow = [e for e in backend().log if e["path"] == "/slow/2"]
    assert slow and ["X-From", "hook"] in slow[-1]["headers"], slow
    assert p.stop() == 0


@test(timeout=60)
def client_leaving_mid_sleep_ends_the_flow_as_an_error():
    d = H.tmpdir("dump")
    dump = os.path.join(d, "flows")
    log = os.path.join(d, "errors")
    s = lua("leave", '''
return {
  request = function(flow) mitm.sleep(2) end,
  error = function(flow)
    local f = io.open(%s, "a"); f:write(flow.error.msg, "\\n"); f:close()
  end,
}
''' % H.lua_quote(log))
    p = proxy("-s", s, "-w", dump)
    backend().clear()
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as c:
        c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % backend().url("/echo")).encode())
        time.sleep(0.3)
    assert H.wait_for(lambda: os.path.exists(log) and "client disconnected" in H.read(log), 5), \
        p.describe()
    # the hook's coroutine was dropped: nothing reached the server after it
    time.sleep(2.2)
    assert backend().paths() == [], backend().paths()
    assert p.stop() == 0
    flows = read_back(dump)
    assert len(flows) == 1 and "client disconnected" in json.dumps(flows[0]), flows


@test(timeout=60)
def sigterm_ends_waiting_flows_and_writes_the_dump():
    d = H.tmpdir("dump")
    dump = os.path.join(d, "flows")
    s = lua("long", 'function request(flow) mitm.sleep(30) end\n')
    p = proxy("-s", s, "-w", dump)
    c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % backend().url("/echo")).encode())
    time.sleep(0.5)
    t0 = time.monotonic()
    assert p.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 6
    c.close()
    flows = read_back(dump)
    assert len(flows) == 1, flows
    assert "error" in json.dumps(flows[0]), flows


@test(timeout=60)
def script_timeout_counts_running_time_not_waiting():
    s = lua("patient", '''
function request(flow)
  mitm.sleep(0.6)
  flow.request.headers["X-Slept"] = "yes"
end
function response(flow)
  if flow.request.path:find("spin") then while true do end end
end
''')
    p = proxy("-s", s, "--set", "script_timeout=300")
    r = get(p, "/echo")
    assert r.status == 200 and '"X-Slept", "yes"' in r.body.decode(), r
    r = get(p, "/echo?spin")
    assert r.status == 502 and b"script_timeout" in r.body, r
    assert p.stop() == 0


@test(timeout=60)
def intercept_holds_a_flow_until_resumed():
    s = lua("hold", '''
local held = {}
return {
  request = function(flow)
    local path = flow.request.path
    if path:find("hold") then
      flow:intercept()
      held[#held + 1] = flow
    elseif path:find("release") then
      for _, f in ipairs(held) do f.request.headers["X-Released"] = "1"; f:resume() end
      held = {}
    elseif path:find("timer") then
      flow:intercept()
      mitm.timer(0.5, function() flow:kill() end)
    end
  end,
}
''')
    p = proxy("-s", s)
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("r", get(p, "/echo?hold")))
    th.start()
    time.sleep(0.8)
    assert "r" not in res, res           # still held
    assert get(p, "/echo?release").status == 200
    th.join(10)
    assert res["r"].status == 200 and '"X-Released", "1"' in res["r"].body.decode(), res
    # a timer kills a held flow: the client sees the connection close
    t0 = time.monotonic()
    r = get(p, "/echo?timer")
    assert r.status is None or r.status == 0 or r.rc != 0, r
    assert 0.4 < time.monotonic() - t0 < 5
    assert p.stop() == 0


@test
def waiting_where_a_hook_cannot_wait_is_a_clear_error():
    s = lua("nowait", '''
function requestheaders(flow) mitm.sleep(0.1) end
function request(flow) coroutine.yield() end
''')
    p = proxy("-s", s)
    r = get(p, "/echo")
    assert r.status == 200, r
    assert p.wait_output("the requestheaders hook cannot wait", stream="stderr"), p.stderr
    assert p.wait_output("yielded without waiting for anything", stream="stderr"), p.stderr
    assert p.stop() == 0


@test
def module_scripts_return_their_hooks():
    s = lua("module", '''
local count = 0                     -- private to the module
local first = {
  request = function(flow)
    count = count + 1
    flow.request.headers["X-Order"] = "first"
  end,
}
local second = {
  request = function(flow)
    flow.request.headers["X-Order"] = flow.request.headers["X-Order"] .. ",second"
    flow.request.headers["X-Count"] = tostring(count)
    -- Lua's error() is not shadowed by an error hook in module form
    assert(type(error) == "function" and error ~= second_error)
  end,
  error = function(flow) end,
}
return { first, second }
''')
    p = proxy("-s", s)
    r = get(p, "/echo")
    body = r.body.decode()
    assert '"X-Order", "first,second"' in body and '"X-Count", "1"' in body, body
    assert "error in" not in p.stderr, p.stderr
    assert p.stop() == 0


@test(timeout=60)
def scripts_reload_when_their_file_changes():
    s = lua("reload", 'function request(f) f.request.headers["X-V"] = "1" end\n')
    p = proxy("-s", s)
    assert '"X-V", "1"' in get(p, "/echo").body.decode()
    time.sleep(1.1)  # a new mtime, whatever the file system's granularity
    H.write(s, 'function request(f) f.request.headers["X-V"] = "2" end\n'
               'function load() mitm.log.info("version 2 loaded") end\n')
    assert H.wait_for(lambda: '"X-V", "2"' in get(p, "/echo").body.decode(), 5), p.stderr
    assert "version 2 loaded" in p.stderr, p.stderr
    time.sleep(1.1)
    H.write(s, 'function request(f) f.request.headers["X-V"] = 3 +\n')
    assert p.wait_output("reloading %s failed" % s, stream="stderr", timeout=5), p.stderr
    assert "reload.lua:2:" in p.stderr or "reload.lua:1:" in p.stderr, p.stderr
    assert '"X-V", "2"' in get(p, "/echo").body.decode()
    assert p.stop() == 0


@test(timeout=60)
def server_replay_kill_is_the_same_on_every_path():
    d = H.tmpdir("sr")
    rec = os.path.join(d, "rec")
    backend().clear()
    p = proxy("-w", rec)
    assert get(p, "/echo?recorded").status == 200
    assert p.stop() == 0
    errs = os.path.join(d, "errs")
    s = lua("errs", '''
function error(flow)
  local f = io.open(%s, "a"); f:write(flow.request.path, " ", flow.error.msg, "\\n"); f:close()
end
''' % H.lua_quote(errs))
    p = proxy("-S", rec, "--set", "server_replay_extra=kill", "-s", s)
    # HTTP/1: recorded → answered, unrecorded → killed
    assert get(p, "/echo?recorded").status == 200
    r = get(p, "/echo?h1-unrecorded")
    assert r.status in (None, 0) or r.rc != 0, r
    # HTTP/2 (h2c prior knowledge, through the proxy in reverse mode below)
    assert p.stop() == 0
    rp = proxy("--mode", "reverse:" + backend().url("/"), "-S", rec,
               "--set", "server_replay_extra=kill", "-s", s)
    r = H.curl("http://127.0.0.1:%d/echo?h2-unrecorded" % rp.port, http11=False,
               args=["--http2-prior-knowledge"])
    assert r.status != 200, r
    assert rp.stop() == 0
    # client replay of a flow nothing recorded
    rec2 = os.path.join(d, "rec2")
    p2 = proxy("-w", rec2)
    assert get(p2, "/echo?creplay-unrecorded").status == 200
    assert p2.stop() == 0
    r = subprocess.run([H.BIN, "-n", "-C", rec2, "-S", rec, "--set", "server_replay_extra=kill",
                        "-s", s, "--confdir", os.path.join(d, "conf")],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    text = H.read(errs)
    for path in ("h1-unrecorded", "h2-unrecorded", "creplay-unrecorded"):
        assert path in text and "Connection killed" in text, text
    assert len(backend().paths()) == 2, backend().paths()   # the two recordings only


@test
def rfile_hooks_may_wait():
    d = H.tmpdir("rf")
    rec = os.path.join(d, "rec")
    p = proxy("-w", rec)
    assert get(p, "/echo?a").status == 200
    assert p.stop() == 0
    s = lua("rwait", '''
function response(flow)
  mitm.sleep(0.2)
  flow.comment = "waited"
end
''')
    out = os.path.join(d, "out")
    r = subprocess.run([H.BIN, "-n", "-r", rec, "-s", s, "-w", out, "-q"], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    flows = read_back(out)
    assert len(flows) == 1 and "waited" in json.dumps(flows[0]), flows


if __name__ == "__main__":
    H.main()
