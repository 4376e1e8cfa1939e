#!/usr/bin/python3
"""Every script in examples/ runs, and does what its comment says."""
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness as H
from harness import test, fixture
from backend import Backend

EX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")


@fixture
def backend():
    return Backend().start()


def proxy_with(name, *extra, env=None):
    if H.Proxy().is_mitmdump:
        H.skip("Lua scripts")
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return H.Proxy(["-s", os.path.join(EX, name)] + list(extra), label=name).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@test
def add_header():
    p = proxy_with("add_header.lua")
    r = H.curl(backend().url("/echo"), proxy=p)
    seen = json.loads(r.body)
    assert ["X-Seen-By", "mitmlua"] in seen["headers"], seen["headers"]
    before = len(backend().log)
    r = H.curl(backend().url("/health"), proxy=p)
    assert r.status == 200 and r.body == b"ok", r.status
    assert len(backend().log) == before, "the mocked request reached the backend"


@test
def block():
    p = proxy_with("block.lua")
    r = H.curl("http://ads.example.com/x", proxy=p)
    assert r.status == 403 and b"blocked" in r.body, r.status
    r = H.curl(backend().url("/pixel.gif?id=1"), proxy=p)
    assert r.rc != 0 and r.status is None, r.rc     # killed: no response at all
    r = H.curl(backend().url("/echo"), proxy=p)
    assert r.status == 200, r.status


@test
def mock():
    p = proxy_with("mock.lua")
    before = len(backend().log)
    r = H.curl(backend().url("/api/user/1"), proxy=p)
    assert r.status == 200 and json.loads(r.body) == {"id": 1, "name": "Ada"}, r.body[:200]
    assert H.header(r.headers, "X-Mocked") == "1"
    assert len(backend().log) == before


@test
def rewrite_json():
    # a JSON answer made by a first script, rewritten by the example
    d = H.tmpdir("rj")
    first = os.path.join(d, "api.lua")
    H.write(first, 'function request(f) f.response = mitm.response(200, '
                   '{["Content-Type"]="application/json"}, \'{"debug": false, "n": 1}\') end\n')
    if H.Proxy().is_mitmdump:
        H.skip("Lua scripts")
    p = H.Proxy(["-s", first, "-s", os.path.join(EX, "rewrite_json.lua")]).start()
    r = H.curl(backend().url("/api"), proxy=p)
    assert r.status == 200 and json.loads(r.body) == {"debug": True, "n": 1}, r.body[:200]
    assert H.header(r.headers, "Content-Length") == str(len(r.body))


@test
def count_hosts():
    p = proxy_with("count_hosts.lua")
    for _ in range(3):
        H.curl(backend().url("/echo"), proxy=p)
    assert p.stop() == 0
    assert "127.0.0.1: 3" in p.stderr, p.stderr[-500:]


@test
def errors():
    p = proxy_with("errors.lua")
    port = H.free_port()
    r = H.curl("http://127.0.0.1:%d/nothing-listens" % port, proxy=p)
    assert r.status == 502, r.status
    assert H.wait_for(lambda: "nothing-listens failed:" in p.stderr), p.stderr[-500:]


@test
def security_headers_fail_the_run():
    ex = os.path.join(EX, "security_headers.lua")
    good = backend().url("/headers?X-Content-Type-Options=nosniff&Content-Security-Policy=default-src%20%27self%27"
                         "&Set-Cookie=sid%3D1%3B%20Secure%3B%20HttpOnly")
    bad = backend().url("/headers?X-Content-Type-Options=nosniff&Set-Cookie=sid%3D1%3B%20Path%3D%2F")
    p = proxy_with("security_headers.lua", "--set", "fail_on=~meta insecure")
    assert H.curl(good, proxy=p).status == 200
    assert p.stop() == 0, p.stderr[-500:]          # nothing flagged: the job passes
    p = proxy_with("security_headers.lua", "--set", "fail_on=~meta insecure")
    p.expect_rc = 3
    assert H.curl(bad, proxy=p).status == 200
    assert p.stop() == 3, p.stderr[-500:]          # flagged: fail_on's exit status
    assert "no Content-Security-Policy" in p.stderr and "cookie sid without Secure" in p.stderr, p.stderr[-500:]
    assert "cookie sid without HttpOnly" in p.stderr, p.stderr[-500:]


@test
def redact_keeps_secrets_out_of_the_recording():
    har = os.path.join(H.tmpdir("redact"), "flows.har")
    p = proxy_with("redact.lua", "--set", "hardump=" + har)
    r = H.curl(backend().url("/upload?token=abc123&x=1"), proxy=p, method="POST",
               data=b'{"user": "ada", "password": "hunter2"}',
               headers=["Authorization: Bearer s3cr3t", "Content-Type: application/json"])
    assert r.status == 200, r
    # the server got the real request ...
    seen = [e for e in backend().log if e["path"].startswith("/upload")][-1]
    assert ["Authorization", "Bearer s3cr3t"] in seen["headers"] and "token=abc123" in seen["path"], seen
    assert p.stop() == 0
    # ... the recording does not
    with open(har) as f:
        text = f.read()
    for secret in ("s3cr3t", "hunter2", "abc123"):
        assert secret not in text, secret
    assert text.count("REDACTED") >= 3, text[:1000]


@test
def record_one_api_only():
    d = H.tmpdir("oneapi")
    dump = os.path.join(d, "api.mitmlua")
    p = proxy_with("record_one_api.lua", "-w", dump, "!~meta skip")
    for path in ("/api/users", "/echo", "/api/orders", "/bytes/3"):
        H.curl(backend().url(path), proxy=p)
    assert p.stop() == 0
    out = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "console_format=jsonl"],
                         capture_output=True, timeout=30)
    urls = [json.loads(l)["url"] for l in out.stdout.decode().splitlines()]
    assert [u[u.index("/", 8):] for u in urls] == ["/api/users", "/api/orders"], (urls, out.stderr)


@test(timeout=60)
def chaos_delays_and_fails_some_requests():
    p = proxy_with("chaos.lua", env={"CHAOS_DELAY_RATE": "0.5", "CHAOS_FAIL_RATE": "0.5",
                                     "CHAOS_DELAY_MIN_MS": "300", "CHAOS_DELAY_MAX_MS": "300",
                                     "CHAOS_SEED": "7"})
    statuses, slow = [], 0
    for i in range(40):
        t0 = time.monotonic()
        r = H.curl(backend().url("/echo?i=%d" % i), proxy=p)
        if time.monotonic() - t0 >= 0.3:
            slow += 1
        statuses.append(r.status)
    # about half of each; 40 draws at 1/2 fall outside 5..35 once in 10^6 runs
    assert 5 <= statuses.count(503) <= 35 and statuses.count(200) + statuses.count(503) == 40, statuses
    assert 5 <= slow <= 35, slow
    assert p.stop() == 0


class _TokenServer(ThreadingHTTPServer):
    daemon_threads = True


def token_server():
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(body)
            time.sleep(0.3)       # a slow token endpoint: concurrent flows wait for one fetch
            out = json.dumps({"access_token": "tok-%d" % len(calls), "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = _TokenServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, calls


@test(timeout=60)
def auth_token_fetches_once_and_adds_it():
    srv, calls = token_server()
    url = "http://127.0.0.1:%d/token" % srv.server_address[1]
    p = proxy_with("auth_token.lua", "--set", "workers=1", env={"TOKEN_URL": url})
    results = []
    threads = [threading.Thread(target=lambda: results.append(H.curl(backend().url("/echo"), proxy=p)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    results.append(H.curl(backend().url("/echo"), proxy=p))
    for r in results:
        assert r.status == 200 and ["Authorization", "Bearer tok-1"] in json.loads(r.body)["headers"], r
    assert len(calls) == 1 and b"grant_type=client_credentials" in calls[0], calls
    srv.shutdown()
    assert p.stop() == 0


@test(timeout=60)
def hold_until_holds_requests_until_ready():
    flag = os.path.join(H.tmpdir("hold"), "ready")
    p = proxy_with("hold_until.lua", env={"HOLD_UNTIL_FILE": flag})
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("r", H.curl(backend().url("/echo?held"), proxy=p)))
    th.start()
    time.sleep(1.0)
    assert "r" not in res and not any("held" in e["path"] for e in backend().log), res
    H.write(flag, "")
    th.join(10)
    assert res["r"].status == 200, res
    # ready: nothing is held any more
    t0 = time.monotonic()
    assert H.curl(backend().url("/echo"), proxy=p).status == 200
    assert time.monotonic() - t0 < 1
    assert p.stop() == 0


if __name__ == "__main__":
    H.main()
