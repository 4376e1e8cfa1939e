#!/usr/bin/python3
"""Core: plain HTTP through the explicit proxy (curl -x), end to end.

Bodies byte for byte (Content-Length, chunked, close-delimited, 5 MB both
ways), HEAD/204/304 without bodies, 100-continue, keep-alive on both sides,
header order and case, IPv6 backend, gzip passed through untouched."""
import hashlib
import json
import os

import harness as H
from harness import test, fixture
from backend import Backend, payload

MB5 = 5 * 1024 * 1024


@fixture
def backend():
    return Backend().start()


@fixture
def backend6():
    return Backend(host="::1").start()


@fixture
def proxy():
    return H.Proxy(label="proxy").start()


def get(path, **kw):
    return H.curl(backend().url(path), proxy=proxy(), **kw)


def last_request(path):
    for e in reversed(backend().log):
        if e["path"] == path:
            return e
    raise AssertionError("%s never reached the backend: %r" % (path, backend().paths()))


@test
def get_echo():
    r = get("/echo?x=1", headers=["X-Test: one"])
    assert r.rc == 0 and r.status == 200, r
    doc = json.loads(r.body)
    assert doc["method"] == "GET"
    # the proxy turns the absolute-form target into origin-form upstream
    assert doc["request_line"] == "GET /echo?x=1 HTTP/1.1", doc
    assert ["X-Test", "one"] in doc["headers"], doc
    host = [v for k, v in doc["headers"] if k.lower() == "host"]
    assert host == [backend().netloc], host


@test
def header_order_and_case_kept():
    r = get("/echo", headers=["X-MiXeD-CaSe: 1", "x-lower: 2", "X-UPPER: 3", "X-Dup: a", "X-Dup: b"])
    assert r.status == 200, r
    names = [k for k, v in json.loads(r.body)["headers"]]
    want = ["X-MiXeD-CaSe", "x-lower", "X-UPPER", "X-Dup", "X-Dup"]
    got = [n for n in names if n in want]
    assert got == want, names
    dups = [v for k, v in json.loads(r.body)["headers"] if k == "X-Dup"]
    assert dups == ["a", "b"], dups


@test
def response_headers_passed():
    r = get("/headers?X-From-Backend=yes&Set-Cookie=a%3D1&Set-Cookie=b%3D2")
    assert r.status == 200, r
    assert H.header(r.headers, "X-From-Backend") == "yes", r.headers
    cookies = [v for k, v in r.headers if k.lower() == "set-cookie"]
    assert cookies == ["a=1", "b=2"], cookies


@test
def post_small_body():
    r = get("/echo", method="POST", data=b"hello\x00world", headers=["Content-Type: application/x-test"])
    assert r.status == 200, r
    doc = json.loads(r.body)
    import base64
    assert doc["method"] == "POST"
    assert base64.b64decode(doc["body"]) == b"hello\x00world"


@test(timeout=60)
def upload_5mb_content_length():
    path = os.path.join(H.tmpdir("up"), "body")
    data = payload(MB5 + 7)
    H.write(path, data, "wb")
    r = get("/upload", data_file=path, max_time=40)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}, doc


@test(timeout=60)
def upload_5mb_chunked():
    path = os.path.join(H.tmpdir("up"), "body")
    data = payload(MB5 + 13)
    H.write(path, data, "wb")
    r = get("/upload", data_file=path, headers=["Transfer-Encoding: chunked"], max_time=40)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}, doc


@test
def expect_100_continue():
    r = get("/upload", data=b"x" * 1000, headers=["Expect: 100-continue"])
    assert r.status == 200, r
    assert [b[0] for b in r.blocks] == [100, 200], r.blocks
    assert json.loads(r.body)["length"] == 1000


@test
def early_hints_pass_through():
    r = get("/early-hints")
    assert [b[0] for b in r.blocks] == [103, 200], r.blocks
    assert r.status == 200 and r.body == b"after the hints\n", r


@test(timeout=60)
def download_5mb_content_length():
    r = get("/bytes/%d" % MB5, max_time=40)
    assert r.status == 200, r
    assert H.header(r.headers, "Content-Length") == str(MB5), r.headers
    assert r.body == payload(MB5), "body differs (len %d)" % len(r.body)


@test(timeout=60)
def download_5mb_chunked():
    r = get("/chunked/%d" % MB5, max_time=40)
    assert r.status == 200, r
    assert r.body == payload(MB5), "body differs (len %d)" % len(r.body)


@test
def download_close_delimited():
    n = 1024 * 1024 + 3
    r = get("/close/%d" % n)
    assert r.rc == 0 and r.status == 200, r
    assert r.body == payload(n), "body differs (len %d)" % len(r.body)


@test
def large_body_read_in_large_pieces():
    # libevent 2.1 alone reads a socket 4 KB at a time: 8 MB would be 2,048
    # reads from the server at least; bevbulk.h reads what the socket holds
    n = 8 * 1024 * 1024
    assert get("/bytes/10").status == 200
    pid = proxy().proc.pid
    r0, w0 = H.syscalls(pid)
    r = get("/bytes/%d" % n)
    r1, w1 = H.syscalls(pid)
    assert r.rc == 0 and r.body == payload(n), r
    print("8 MB through the proxy: %d reads, %d writes" % (r1 - r0, w1 - w0))
    assert r1 - r0 < 1024, "%d reads for 8 MB" % (r1 - r0)


@test
def large_bodies_reuse_memory():
    # each 1 MB body is a fresh 1 MB buffer; glibc's adaptive limits gave
    # such blocks back to the kernel at once, and every page of the next
    # one faulted in again (main.c: tune_malloc)
    n = 1024 * 1024
    p = H.Proxy(["-w", os.path.join(H.tmpdir("dump"), "flows")]).start()
    url = backend().url("/bytes/%d" % n)
    for _ in range(3):
        assert H.curl(url, proxy=p).status == 200
    f0 = H.minor_faults(p.proc.pid)
    for _ in range(10):
        r = H.curl([url, url], proxy=p)
        assert r.rc == 0 and r.body == payload(n) * 2, r
    faults = H.minor_faults(p.proc.pid) - f0
    p.stop()
    print("20 bodies of 1 MB: %d page faults" % faults)
    # (AddressSanitizer's allocator hands out fresh memory by design)
    assert H.sanitized() or faults < 400, "%d page faults for 20 bodies of 1 MB (256 pages each)" % faults


@test
def small_bodies_each_framing():
    for path in ("/bytes/0", "/bytes/1", "/chunked/1", "/close/1", "/chunked/0", "/close/0"):
        n = int(path.rsplit("/", 1)[1])
        r = get(path)
        assert r.rc == 0 and r.status == 200, (path, r)
        assert r.body == payload(n), (path, r.body)


@test
def head_has_no_body_and_connection_goes_on():
    c = H.Conn("127.0.0.1", proxy().port)
    bl = backend().netloc
    c.send(b"HEAD http://%s/bytes/1000 HTTP/1.1\r\nHost: %s\r\n\r\n" % (bl.encode(), bl.encode()))
    st, hdrs, _ = c.response(head=True)
    assert st == 200 and H.header(hdrs, "content-length") == "1000", (st, hdrs)
    assert c.idle(0.5), "bytes after a HEAD response"
    c.send(b"GET http://%s/bytes/10 HTTP/1.1\r\nHost: %s\r\n\r\n" % (bl.encode(), bl.encode()))
    st, hdrs, body = c.response()
    assert st == 200 and body == payload(10), (st, body)
    c.close()
    # and with curl -I
    r = get("/chunked/100", args=["-I"])
    assert r.rc == 0 and r.status == 200 and r.body.startswith(b"HTTP/1.1 200"), r


@test
def no_body_statuses_204_304():
    c = H.Conn("127.0.0.1", proxy().port)
    bl = backend().netloc.encode()
    for code in (204, 304):
        c.send(b"GET http://%s/status/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (bl, code, bl))
        st, hdrs, body = c.response()
        assert st == code, (st, hdrs)
        assert c.idle(0.5), "bytes after a %d response" % code
    c.send(b"GET http://%s/bytes/5 HTTP/1.1\r\nHost: %s\r\n\r\n" % (bl, bl))
    st, hdrs, body = c.response()
    assert st == 200 and body == payload(5), (st, body)
    c.close()
    for code in (204, 304, 404, 500):
        r = get("/status/%d" % code)
        assert r.rc == 0 and r.status == code, (code, r)


@test
def keep_alive_both_sides():
    backend().clear()
    r = get("/echo", verbose=True, args=[backend().url("/bytes/10")])
    assert r.rc == 0 and r.status == 200, r
    assert "Re-using existing connection" in r.stderr, r.stderr
    clients = [tuple(e["client"]) for e in backend().log]
    assert len(clients) == 2, backend().log
    # the proxy kept its upstream connection too
    assert clients[0] == clients[1], clients


@test
def ipv6_backend():
    b6 = backend6()
    r = H.curl(b6.url("/echo"), proxy=proxy())
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["client"][0] == "::1", doc
    host = [v for k, v in doc["headers"] if k.lower() == "host"]
    assert host == ["[::1]:%d" % b6.port], host
    r = H.curl(b6.url("/bytes/100000"), proxy=proxy())
    assert r.body == payload(100000)


@test
def gzip_passed_through_unchanged():
    r = get("/gzip")
    assert r.status == 200 and H.header(r.headers, "content-encoding") == "gzip", r
    import gzip
    assert json.loads(gzip.decompress(r.body))["compressed"] is True
    r = get("/gzip", args=["--compressed"])
    assert json.loads(r.body)["compressed"] is True


@test
def methods():
    for m in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        r = get("/echo", method=m, data=b"m" if m != "OPTIONS" else None)
        assert r.status == 200 and json.loads(r.body)["method"] == m, (m, r)


@test
def console_line_per_flow():
    r = get("/echo?console=1")
    assert r.status == 200
    p = proxy()
    url = backend().url("/echo?console=1")
    import re
    pat = re.compile(r"^127\.0\.0\.1:\d+: GET %s( HTTP/1\.1)?\n +<< (HTTP/1\.1 )?200 OK \d"
                     % re.escape(url), re.M)
    assert p.wait_output(pat, 5), p.stdout[-2000:]


@test
def pipelined_requests_answered_in_order():
    """Requests sent back to back before any answer (HTTP/1.1 pipelining)
    are answered in order, one response each; the proxy keeps reading
    while an exchange is in flight, so the later ones wait in its input."""
    b, p = backend(), proxy()
    host = b.netloc.encode()
    reqs = b"".join(b"GET http://%s/bytes/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, n, host)
                    for n in (11, 2000, 7, 70000))
    reqs += b"GET http://%s/bytes/5 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (host, host)
    data, closed = H.raw("127.0.0.1", p.port, reqs, timeout=10)
    assert closed, data[-300:]
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        bodies.append(rest[:n])
        data = rest[n:]
    assert bodies == [payload(n) for n in (11, 2000, 7, 70000, 5)], [len(x) for x in bodies]


@test
def half_closed_client_still_gets_the_answer():
    """A client that shuts down its sending side right after the request
    (shutdown(SHUT_WR), as some scripts do) is answered, then closed, as
    nginx does."""
    H.skip_if_mitmdump("mitmdump 8.1.1 takes the half-close for a disconnect and answers nothing")
    b, p = backend(), proxy()
    host = b.netloc.encode()
    data, closed = H.raw("127.0.0.1", p.port,
                         b"GET http://%s/slow/0.3 HTTP/1.1\r\nHost: %s\r\n\r\n" % (host, host),
                         timeout=10, half_close=True)
    assert H.status_of(data) == 200 and data.endswith(b"slow\n"), data
    assert closed


if __name__ == "__main__":
    H.main()
