#!/usr/bin/python3
"""HTTP/2 clients: curl --http2 through CONNECT (ALPN h2) to an HTTP/1.1-only
backend and to nginx, curl --http1.1 still HTTP/1.1, h2c prior knowledge in
reverse mode (curl, h2load with many multiplexed streams), a big download
next to small requests on one connection, a big upload, and raw abuse
(bad preface, CONTINUATION flood, rapid reset, CR/LF in a value) answered
without harm.  Upstream is HTTP/1.1."""
import hashlib
import os
import socket
import struct
import subprocess
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


@fixture
def plain_backend():
    return Backend().start()


def flows_in(dump):
    """The lines `mitmlua -n -r dump` prints for the recorded flows."""
    r = subprocess.run([H.BIN, "-n", "-r", dump], capture_output=True, timeout=30)
    return r.stdout.decode("utf-8", "replace")


def curl2(url, proxy=None, cacert=None, args=(), **kw):
    """curl speaking HTTP/2; the body ends with a line holding the HTTP
    version curl used."""
    return H.curl(url, proxy=proxy, cacert=cacert, http11=False,
                  args=list(args) + ["-w", "\n%{http_version}"], **kw)


@test
def connect_h2_to_http11_backend():
    b = tls_backend()
    d = H.tmpdir("h2")
    dump = os.path.join(d, "flows")
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert, "-w", dump]).start()
    r = curl2(b.url("/echo", scheme="https", host="localhost"), proxy=p, cacert=p.ca(),
              args=["--http2", "-H", "Cookie: a=1", "-H", "Cookie: b=2"])
    assert r.rc == 0 and r.status == 200, r
    body, ver = r.body.rsplit(b"\n", 1)
    assert ver == b"2", r               # the client spoke HTTP/2 to us
    import json
    echo = json.loads(body)
    assert echo["http_version"] == "HTTP/1.1", echo   # and we HTTP/1.1 upstream
    names = [k.lower() for k, _ in echo["headers"]]
    assert "host" in names and names.count("host") == 1, echo
    assert dict((k.lower(), v) for k, v in echo["headers"])["host"] == "localhost:%d" % b.port
    assert p.wait_output("GET https://localhost:%d/echo HTTP/2.0" % b.port, 5), p.stdout[-2000:]
    assert p.stop() == 0
    assert "HTTP/2.0" in flows_in(dump)


@test
def connect_http11_stays_http11():
    b = tls_backend()
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    r = curl2(b.url("/echo", scheme="https", host="localhost"), proxy=p, cacert=p.ca(),
              args=["--http1.1"])
    assert r.rc == 0 and r.status == 200 and r.body.endswith(b"\n1.1"), r
    # mitmdump names the version only when it is not HTTP/1.1
    assert p.wait_output("GET https://localhost:%d/echo\n" % b.port, 5), p.stdout[-2000:]
    assert "HTTP/2.0" not in p.stdout, p.stdout[-2000:]


@test
def http2_false_offers_only_http11():
    b = tls_backend()
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert,
                 "--set", "http2=false"]).start()
    r = curl2(b.url("/bytes/10", scheme="https", host="localhost"), proxy=p, cacert=p.ca(),
              args=["--http2"])
    assert r.rc == 0 and r.status == 200 and r.body.endswith(b"\n1.1"), r


def start_nginx(cert, key):
    d = H.tmpdir("nginx")
    port = H.free_port()
    H.write(os.path.join(d, "big"), payload(3 * 1024 * 1024), "wb")
    conf = os.path.join(d, "nginx.conf")
    H.write(conf, """
%(user)s
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        root %(d)s;
        location = /hello { return 200 "hello from nginx\\n"; }
    }
}
""" % {"d": d, "port": port, "cert": cert, "key": key,
       # as root, nginx's workers would run as nobody, who cannot read our tmp files
       "user": "user root;" if os.geteuid() == 0 else ""})
    proc = subprocess.Popen(["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf,
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = H.wait_for(lambda: _connects(port), timeout=10)
    if not ok:
        proc.kill()
        raise AssertionError("nginx did not start: %s" % proc.stderr.read())
    return proc, port


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@test
def connect_h2_to_nginx():
    proc, port = start_nginx(pki().cert, pki().key)
    try:
        p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
        r = curl2("https://localhost:%d/hello" % port, proxy=p, cacert=p.ca(), args=["--http2"])
        assert r.rc == 0 and r.status == 200 and r.body == b"hello from nginx\n\n2", r
        r = curl2("https://localhost:%d/big" % port, proxy=p, cacert=p.ca(), args=["--http2"])
        body = r.body.rsplit(b"\n", 1)[0]
        assert r.rc == 0 and body == payload(3 * 1024 * 1024), r
        assert p.wait_output("GET https://localhost:%d/big HTTP/2.0" % port, 5), p.stdout[-2000:]
    finally:
        proc.terminate()
        proc.wait(10)


@test
def reverse_h2c_prior_knowledge():
    b = plain_backend()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()
    r = curl2("http://127.0.0.1:%d/echo" % p.port, args=["--http2-prior-knowledge", "-H", "Cookie: a=1",
                                                          "-H", "Cookie: b=2"])
    assert r.rc == 0 and r.status == 200 and r.body.endswith(b"\n2"), r
    import json
    echo = json.loads(r.body.rsplit(b"\n", 1)[0])
    hd = dict((k.lower(), v) for k, v in echo["headers"])
    assert hd["cookie"] == "a=1; b=2", echo          # RFC 9113 §8.2.3 crumbs joined
    assert hd["host"] == b.netloc, echo
    # HTTP/1 on the same port still works
    r = H.curl("http://127.0.0.1:%d/bytes/5" % p.port)
    assert r.status == 200 and r.body == payload(5), r


@test
def early_hints_reach_h2_clients():
    # a 103 from an HTTP/1 server becomes an interim HEADERS frame
    b = plain_backend()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()
    r = curl2("http://127.0.0.1:%d/early-hints" % p.port, args=["--http2-prior-knowledge"])
    assert r.rc == 0 and r.status == 200 and r.body == b"after the hints\n\n2", r
    assert [b[0] for b in r.blocks] == [103, 200], r.blocks
    assert H.header(r.blocks[0][2], "Link") == "</style.css>; rel=preload", r.blocks


@test
def server_replay_answers_h2_streams():
    """-S serves HTTP/2 streams from a recording without the server."""
    b = Backend().start()
    dump = os.path.join(H.tmpdir("h2replay"), "flows")
    rec = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/"), "-w", dump]).start()
    assert H.curl("http://127.0.0.1:%d/bytes/7" % rec.port).status == 200
    rec.stop()
    port = b.port
    b.stop()
    p = H.Proxy(["--mode", "reverse:http://127.0.0.1:%d" % port, "-S", dump,
                 "--set", "server_replay_extra=404"]).start()
    r = curl2("http://127.0.0.1:%d/bytes/7" % p.port, args=["--http2-prior-knowledge"])
    assert r.rc == 0 and r.status == 200 and r.body == payload(7) + b"\n2", r  # curl2 adds the version
    r = curl2("http://127.0.0.1:%d/bytes/8" % p.port, args=["--http2-prior-knowledge"])
    assert r.rc == 0 and r.status == 404, r


@test(timeout=90)
def h2load_many_streams_reverse():
    b = plain_backend()
    d = H.tmpdir("h2")
    dump = os.path.join(d, "flows")
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/"), "-w", dump, "--set", "flow_detail=0"]).start()
    n = 400
    r = subprocess.run(["h2load", "-n", str(n), "-c", "2", "-m", "50",
                        "http://127.0.0.1:%d/bytes/100" % p.port], capture_output=True, timeout=80)
    out = r.stdout.decode()
    assert "%d succeeded, 0 failed, 0 errored, 0 timeout" % n in out, out
    assert "status codes: %d 2xx" % n in out, out
    assert p.stop() == 0
    lines = [l for l in flows_in(dump).splitlines() if "GET http://" in l and "HTTP/2.0" in l]
    assert len(lines) == n, len(lines)


@test(timeout=90)
def big_download_next_to_small_requests():
    # one connection, one 16 MiB stream and ten small ones at once (h2load
    # cycles through the URLs; curl 7.88's -Z cannot multiplex h2c)
    b = plain_backend()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()
    big = 16 * 1024 * 1024
    urls = ["http://127.0.0.1:%d/bytes/%d" % (p.port, big)]
    urls += ["http://127.0.0.1:%d/bytes/%d" % (p.port, 100 + i) for i in range(10)]
    r = subprocess.run(["h2load", "-n", "11", "-c", "1", "-m", "11"] + urls, capture_output=True, timeout=80)
    out = r.stdout.decode()
    assert "11 succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert "status codes: 11 2xx" in out, out
    assert "(%d) data" % (big + sum(100 + i for i in range(10))) in out, out


@test(timeout=60)
def big_upload():
    b = plain_backend()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()
    data = os.urandom(8 * 1024 * 1024)
    r = curl2("http://127.0.0.1:%d/upload" % p.port, data=data, args=["--http2-prior-knowledge"], max_time=50)
    import json
    got = json.loads(r.body.rsplit(b"\n", 1)[0])
    assert got == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}, got


def proxy_rss_kb(pid):
    with open("/proc/%d/status" % pid) as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:"))


def h2_get(port, path, pause=0.0, rcvbuf=64 * 1024):
    """GET over h2c prior knowledge with the h2 package (Debian's, which
    mitmproxy uses), not reading for `pause` seconds after the request:
    returns (status, body, proxy-RSS growth is measured by the caller)."""
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port),
                            (":path", path)], end_stream=True)
    s.sendall(conn.data_to_send())
    time.sleep(pause)
    status, body, done = None, [], False
    deadline = time.monotonic() + 60
    while not done and time.monotonic() < deadline:
        data = s.recv(1 << 20)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body.append(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        s.sendall(conn.data_to_send())
    s.close()
    return status, b"".join(body)


@test(timeout=90)
def stream_large_bodies_to_a_slow_h2_client():
    # the response is passed on as it arrives; a client that does not read
    # (its flow-control window stays shut) pauses the server instead of
    # growing the proxy by the whole body
    b = plain_backend()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/"), "--set", "stream_large_bodies=1m",
                 "--set", "console_format=jsonl"]).start()
    size = 48 * 1024 * 1024
    want = hashlib.sha256(payload(size)).hexdigest()
    base = proxy_rss_kb(p.proc.pid)
    import threading
    grown = []
    t = threading.Timer(1.5, lambda: grown.append(proxy_rss_kb(p.proc.pid) - base))
    t.start()
    status, body = h2_get(p.port, "/bytes/%d" % size, pause=2.0)
    t.join()
    assert status == 200 and len(body) == size and hashlib.sha256(body).hexdigest() == want, (status, len(body))
    with open(H.BIN, "rb") as f:
        limit = 32 if b"__asan_init" in f.read() else 16
    assert grown[0] < limit * 1024, "proxy RSS grew by %d kB while the client was not reading" % grown[0]
    # the flow keeps the head only, and the connection serves small bodies whole
    r = curl2("http://127.0.0.1:%d/bytes/300" % p.port, args=["--http2-prior-knowledge"])
    assert r.rc == 0 and r.body == payload(300) + b"\n2", r
    import json
    assert H.wait_for(lambda: p.stdout.count("\n") >= 2, timeout=10), p.stdout
    fl = [json.loads(l) for l in p.stdout.splitlines()]
    assert fl[0]["status"] == 200 and fl[0]["response_size"] == 0 and fl[0]["error"] is None, fl[0]
    assert fl[1]["response_size"] == 300, fl[1]


@test
def upload_over_body_size_limit_is_413():
    b = Backend().start()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/"), "--set", "body_size_limit=1k"]).start()
    r = curl2("http://127.0.0.1:%d/upload" % p.port, data=b"x" * 100000, args=["--http2-prior-knowledge"])
    assert r.status == 413, r
    assert b.paths() == [], b.paths()          # never sent upstream


@test
def upstream_connections_pooled_per_h2_connection():
    # through CONNECT + ALPN h2 (curl 7.88 cannot reuse an h2c connection)
    b = Backend(tls=(pki().cert, pki().key)).start()
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    urls = [b.url("/bytes/%d" % n, scheme="https", host="localhost") for n in (1, 2, 3, 4)]
    r = H.curl(urls, proxy=p, cacert=p.ca(), http11=False, args=["--http2"])
    assert r.rc == 0 and r.body == b"".join(payload(n) for n in (1, 2, 3, 4)), r
    assert p.wait_output("/bytes/4 HTTP/2.0", 5), p.stdout[-2000:]
    # one client connection, requests one after another: one server connection
    ports = set(e["client"][1] for e in b.log)
    assert len(b.log) == 4 and len(ports) == 1, b.log


@test
def hooks_see_h2_flows():
    b = Backend().start()
    s = H.script("h2hooks", lua='''
function request(f)
  f.request.headers["X-Seen-Version"] = f.request.http_version
  if f.request.path == "/answered" then
    f.response = mitm.response(203, {["X-Mock"] = "1"}, "from the script")
  end
end
function response(f)
  f.response.headers["X-Req"] = f.request.method .. " " .. f.request.url
end
''', py='''
from mitmproxy import http
def request(flow):
    flow.request.headers["X-Seen-Version"] = flow.request.http_version
    if flow.request.path == "/answered":
        flow.response = http.Response.make(203, b"from the script", {"X-Mock": "1"})
def response(flow):
    flow.response.headers["X-Req"] = flow.request.method + " " + flow.request.url
''')
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/"), "-s", s]).start()
    r = curl2("http://127.0.0.1:%d/echo" % p.port, args=["--http2-prior-knowledge"])
    assert r.status == 200, r
    import json
    echo = json.loads(r.body.rsplit(b"\n", 1)[0])
    hd = dict((k.lower(), v) for k, v in echo["headers"])
    assert hd["x-seen-version"] == "HTTP/2.0", echo
    assert H.header(r.headers, "x-req") == "GET %s" % b.url("/echo"), r
    r = curl2("http://127.0.0.1:%d/answered" % p.port, args=["--http2-prior-knowledge"])
    assert r.status == 203 and r.body == b"from the script\n2", r
    assert H.header(r.headers, "x-mock") == "1", r
    assert b.paths() == ["/echo"], b.paths()


# ---- raw frames -------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload


REQ = bytes([0x82, 0x86, 0x84, 0x01, 0x01]) + b"a"  # GET http / :authority a


def frames(data):
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7fffffff,
                    data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def read_until(s, pred, timeout=10):
    """Read frames until pred(frames) or the peer closes; bounded."""
    got = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred(frames(got)):
            return frames(got), False
        s.settimeout(max(0.05, end - time.monotonic()))
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return frames(got), True
        if not b:
            return frames(got), True
        got += b
    return frames(got), False


def goaway(fs):
    return [int.from_bytes(f[3][4:8], "big") for f in fs if f[0] == 7]


@fixture
def reverse_proxy():
    b = plain_backend()
    return H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()


def still_serves(p):
    r = curl2("http://127.0.0.1:%d/bytes/3" % p.port, args=["--http2-prior-knowledge"])
    assert r.status == 200 and r.body == payload(3) + b"\n2", r
    assert p.proc.poll() is None


@test
def abuse_invalid_preface():
    p = reverse_proxy()
    # starts like the preface, then is not: an HTTP/1 error or a close, no crash
    got, closed = H.raw("127.0.0.1", p.port, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(4, 0, 0))
    assert closed, got
    still_serves(p)


@test
def abuse_continuation_flood():
    p = reverse_proxy()
    crumb = bytes([0x00, 0x01]) + b"x" + bytes([0x01]) + b"y"
    data = PREFACE + frame(4, 0, 0) + frame(1, 0, 1, REQ) + b"".join(frame(9, 0, 1, crumb) for _ in range(5000))
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # we may close before it is all sent
        fs, closed = read_until(s, lambda fs: goaway(fs))
    assert goaway(fs) and goaway(fs)[0] != 0, fs
    still_serves(p)


@test
def abuse_rapid_reset():
    p = reverse_proxy()
    parts = [PREFACE, frame(4, 0, 0)]
    for sid in range(1, 2 * 3000, 2):
        parts.append(frame(1, 5, sid, REQ))              # END_STREAM|END_HEADERS
        parts.append(frame(3, 0, sid, b"\0\0\0\x08"))    # RST_STREAM CANCEL
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        try:
            s.sendall(b"".join(parts))
        except OSError:
            pass
        fs, closed = read_until(s, lambda fs: goaway(fs), timeout=20)
    assert goaway(fs) and goaway(fs)[-1] in (2, 11), fs   # INTERNAL_ERROR / ENHANCE_YOUR_CALM
    still_serves(p)


@test
def abuse_crlf_in_header_value():
    b = Backend().start()
    p = H.Proxy(["--mode", "reverse:" + b.url("/").rstrip("/")]).start()
    bad = REQ + bytes([0x00, 0x05]) + b"x-bad" + bytes([0x0e]) + b"a\r\nInjected: 1"
    with socket.create_connection(("127.0.0.1", p.port)) as s:
        s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 5, 1, bad))
        fs, closed = read_until(s, lambda fs: any(f[0] == 3 and f[2] == 1 for f in fs))
    rst = [int.from_bytes(f[3], "big") for f in fs if f[0] == 3 and f[2] == 1]
    assert rst == [1], fs                   # RST_STREAM PROTOCOL_ERROR
    assert not any(f[0] == 1 and f[2] == 1 for f in fs), fs   # no response
    assert b.paths() == [], b.paths()          # nothing reached the server
    still_serves(p)


if __name__ == "__main__":
    H.main()
