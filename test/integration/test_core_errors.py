#!/usr/bin/python3
"""Core: error paths.  Upstream refused / unresolvable / reset -> 502 with a
reason, upstream silent past read_timeout -> 504; malformed requests -> 400
(431 for a header block over 64 KB, 501 unknown Transfer-Encoding, 505 bad
version) and the connection closed, nothing sent upstream; clients that
vanish mid-request or mid-response leave the proxy serving."""
import re
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload


@fixture
def backend():
    return Backend().start()


@fixture
def proxy():
    return H.Proxy().start()


def one_line_reason(r):
    """The error body names the reason; mitmlua's is one line of text
    (mitmdump sends an HTML page)."""
    text = r.body.decode("utf-8", "replace").strip()
    assert text, "no reason given"
    if not H.IS_MITMDUMP:
        assert len(text.splitlines()) == 1, "want a one-line reason, got %r" % text


def error_line_printed(p, url, method="GET"):
    """mitmdump's console shows a failed flow as the request line followed
    by ' << reason' (a reason, not a status)."""
    pat = re.compile(r"%s %s\n +<< (?!(HTTP/\d\.\d )?\d{3} )\S" % (method, re.escape(url)))
    return p.wait_output(pat, 5)


@test
def upstream_refused_502():
    url = "http://127.0.0.1:%d/echo" % H.free_port()
    r = H.curl(url, proxy=proxy())
    assert r.status == 502, r
    one_line_reason(r)
    assert error_line_printed(proxy(), url), proxy().stdout[-2000:]


@test
def upstream_refused_https_502():
    port = H.free_port()
    r = H.curl("https://127.0.0.1:%d/echo" % port, proxy=proxy(), cacert=proxy().ca())
    assert r.status == 502, r


@test
def upstream_dns_failure_502():
    url = "http://nonexistent.invalid/echo"
    r = H.curl(url, proxy=proxy())
    assert r.status == 502, r
    one_line_reason(r)
    assert error_line_printed(proxy(), url), proxy().stdout[-2000:]


@test
def upstream_reset_502():
    r = H.curl(backend().url("/drop"), proxy=proxy())
    assert r.status == 502, r
    one_line_reason(r)
    # the proxy goes on
    r = H.curl(backend().url("/bytes/3"), proxy=proxy())
    assert r.status == 200 and r.body == payload(3)


@test
def upstream_timeout_504():
    H.skip_if_mitmdump("no read_timeout option")
    p = H.Proxy(["--set", "read_timeout=1"]).start()
    t0 = time.monotonic()
    r = H.curl(backend().url("/slow/4"), proxy=p)
    dt = time.monotonic() - t0
    assert r.status == 504, r
    one_line_reason(r)
    assert dt < 3.5, "504 after %.1fs with read_timeout=1" % dt
    # a prompt upstream is unaffected
    r = H.curl(backend().url("/bytes/3"), proxy=p)
    assert r.status == 200


def reject(data, want, name):
    """Send a raw request; expect status want, the connection closed and
    nothing at the backend."""
    b = backend()
    b.clear()
    got, closed = H.raw("127.0.0.1", proxy().port, data, timeout=5)
    st = H.status_of(got)
    assert st == want, "%s: wanted %s, got %r" % (name, want, got[:300])
    assert closed, "%s: connection left open after %d" % (name, st)
    time.sleep(0.1)
    assert b.paths() == [], "%s: reached the backend: %r" % (name, b.log)


@test
def malformed_requests_rejected():
    bl = backend().netloc.encode()
    start = b"GET http://%s/echo HTTP/1.1\r\nHost: %s\r\n" % (bl, bl)
    # both mitmdump and mitmlua: no host at all for an explicit proxy
    reject(b"GET / HTTP/1.1\r\n\r\n", 400, "origin-form without Host")
    H.skip_if_mitmdump("8.1.1 accepts obs-fold, bare LF, bare CR and huge header blocks")
    reject(start + b"X-A: 1\r\n Foo: bar\r\n\r\n", 400, "obs-fold")
    reject(b"GET http://%s/echo HTTP/1.1\nHost: %s\n\n" % (bl, bl), 400, "bare LF")
    reject(start + b"X-A: 1\rX-B: 2\r\n\r\n", 400, "bare CR")
    reject(start + b"X-A : 1\r\n\r\n", 400, "space before colon")
    reject(start + b"X-A: a\x00b\r\n\r\n", 400, "NUL in value")
    reject(start + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
           "conflicting Content-Length")
    reject(b"GARBAGE\r\n\r\n", 400, "not a request line")
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    reject(start + big + b"\r\n", 431, "header block > 64 KB")
    reject(start + b"Transfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n", 501,
           "unknown Transfer-Encoding")
    reject(b"GET http://%s/echo HTTP/3.0\r\nHost: %s\r\n\r\n" % (bl, bl), 505, "HTTP/3.0")


@test
def header_block_just_under_limit_passes():
    # 60 KB of headers is fine (the limit is 64 KB)
    big = ["X-Pad-%d: %s" % (i, "a" * 1000) for i in range(60)]
    r = H.curl(backend().url("/echo"), proxy=proxy(), headers=big)
    assert r.status == 200, r


@test
def client_vanishes_mid_request():
    bl = backend().netloc.encode()
    # headers complete, body cut short: an error flow
    H.raw("127.0.0.1", proxy().port,
          b"POST http://%s/upload?cut=1 HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n"
          % (bl, bl) + b"x" * 1000, timeout=0.3)
    assert error_line_printed(proxy(), backend().url("/upload?cut=1"), "POST"), proxy().stdout[-2000:]
    for _ in range(3):
        H.raw("127.0.0.1", proxy().port,
              b"POST http://%s/upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n"
              % (bl, bl) + b"x" * 1000, timeout=0.3)
        H.raw("127.0.0.1", proxy().port, b"GET http://%s/echo HTTP/1.1\r\nHo" % bl, timeout=0.2)
    r = H.curl(backend().url("/bytes/10"), proxy=proxy())
    assert r.status == 200 and r.body == payload(10), r
    assert proxy().proc.poll() is None, "proxy died"


@test
def client_vanishes_mid_response():
    r = H.curl(backend().url("/slow/1"), proxy=proxy(), max_time=0.3)
    assert r.rc == 28, r  # curl's timeout
    # a big download the client abandons after 64 KB (close with unread data: RST)
    bl = backend().netloc.encode()
    c = H.Conn("127.0.0.1", proxy().port, timeout=30)  # mitmdump buffers it all first
    c.send(b"GET http://%s/bytes/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (bl, 8 << 20, bl))
    while len(c.buf) < 65536:
        c._fill()
    c.close()
    time.sleep(1.2)  # the slow response arrives for a gone client
    r = H.curl(backend().url("/bytes/10"), proxy=proxy())
    assert r.status == 200 and r.body == payload(10), r
    assert proxy().proc.poll() is None, "proxy died"


if __name__ == "__main__":
    H.main()
