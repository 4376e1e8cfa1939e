#!/usr/bin/python3
"""stream_large_bodies: responses above the size are passed on as they
arrive (Content-Length, chunked, close-delimited), byte for byte, keep-alive
still works after them, the flow keeps only the head (the whole body with
store_streamed_bodies), smaller responses are kept whole, and a client that reads slowly makes the proxy pause the server
instead of buffering the whole body."""
import hashlib
import json
import os
import socket
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload

MB = 1 << 20


@fixture
def backend():
    return Backend().start()


@fixture
def proxy():
    if H.Proxy().is_mitmdump:
        H.skip("the flows are read from mitmlua's console_format=jsonl")
    return H.Proxy(["--set", "stream_large_bodies=1m", "--set", "console_format=jsonl"]).start()


def flows(p, n):
    assert H.wait_for(lambda: p.stdout.count("\n") >= n, timeout=10), p.stdout[-500:]
    return [json.loads(l) for l in p.stdout.splitlines()]


def sha(b):
    return hashlib.sha256(b).hexdigest()


@test
def content_length_body_streamed_intact():
    p = proxy()
    before = p.stdout.count("\n")
    r = H.curl(backend().url("/bytes/%d" % (5 * MB)), proxy=p)
    assert r.rc == 0 and r.status == 200, r
    assert sha(r.body) == sha(payload(5 * MB))
    f = flows(p, before + 1)[before]
    assert f["status"] == 200 and f["error"] is None, f
    assert f["response_size"] == 0, f   # streamed: the flow keeps no body


@test
def chunked_and_close_delimited_streamed_then_keep_alive():
    p = proxy()
    urls = [backend().url("/chunked/%d" % (3 * MB)), backend().url("/bytes/100")]
    r = H.curl(urls, proxy=p)
    assert r.rc == 0, r
    assert r.body.startswith(payload(3 * MB)), len(r.body)
    assert r.body[3 * MB:3 * MB + 100] == payload(100)
    r = H.curl(backend().url("/close/%d" % (2 * MB)), proxy=p)
    assert r.rc == 0 and sha(r.body) == sha(payload(2 * MB)), r


@test
def small_bodies_are_kept():
    p = proxy()
    before = p.stdout.count("\n")
    r = H.curl(backend().url("/bytes/%d" % (512 * 1024)), proxy=p)
    assert r.status == 200 and len(r.body) == 512 * 1024
    f = flows(p, before + 1)[before]
    assert f["response_size"] == 512 * 1024, f


@test
def store_streamed_bodies_keeps_them_for_hooks_and_the_flow():
    if H.Proxy().is_mitmdump:
        H.skip("the flows are read from mitmlua's console_format=jsonl")
    seen = os.path.join(H.tmpdir("store"), "seen")
    s = H.script("seen", lua='''
function response(flow)
  local f = io.open(%s, "a")
  local c = flow.response.raw_content
  f:write(#c, " ", c:byte(1), " ", c:byte(#c), "\\n")
  f:close()
end
''' % H.lua_quote(seen), py="")
    p = H.Proxy(["--set", "stream_large_bodies=1m", "--set", "store_streamed_bodies=true",
                 "--set", "console_format=jsonl", "-s", s]).start()
    for path, size in (("/bytes/%d", 5 * MB), ("/chunked/%d", 3 * MB)):
        r = H.curl(backend().url(path % size), proxy=p)
        assert r.rc == 0 and r.status == 200 and sha(r.body) == sha(payload(size)), r
    fl = flows(p, 2)
    assert [f["response_size"] for f in fl] == [5 * MB, 3 * MB], fl
    want = ["%d %d %d" % (n, payload(n)[0], payload(n)[-1]) for n in (5 * MB, 3 * MB)]
    assert H.read(seen).splitlines() == want, H.read(seen)


def sanitized():
    with open(H.BIN, "rb") as f:
        return b"__asan_init" in f.read()


@test
def slow_client_pauses_the_server():
    p = proxy()
    size = 48 * MB
    payload(size)  # generate before timing anything
    base = H.rss_kb(p.proc.pid)
    sent0 = backend().sent
    with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                  % (backend().url("/bytes/%d" % size).encode(), backend().netloc.encode()))
        time.sleep(1.5)  # the backend could send everything by now
        # the backend is held back: what it sent stops growing, short of all
        sent = H.settled(lambda: backend().sent - sent0)
        grown = H.rss_kb(p.proc.pid) - base
        H.check_backpressure(sent, size)
        hdr, got, digest = H.recv_response_sha256(s, size)
    assert b"200" in hdr.split(b"\r\n")[0], hdr
    assert got == size and digest == sha(payload(size)), got
    # without back-pressure the proxy would hold most of the 48 MB (ASan's
    # quarantine keeps freed memory resident, so its bound is looser)
    limit = 32 if sanitized() else 16
    assert grown < limit * 1024, "proxy RSS grew by %d kB while the client was not reading" % grown


if __name__ == "__main__":
    H.main()
