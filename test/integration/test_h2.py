#!/usr/bin/python3
"""HTTP/2 clients: curl --http2 through CONNECT (ALPN h2) to an HTTP/1.1-only
backend and to nginx, curl --http1.1 still HTTP/1.1, h2c prior knowledge in
reverse mode (curl, h2load with many multiplexed streams), a big download
next to small requests on one connection, a big upload, and raw abuse
(bad preface, CONTINUATION flood, rapid reset, CR/LF in a value) answered
without harm.  Upstream HTTP/2 (ALPN h2 towards TLS origins, for HTTP/1 and
HTTP/2 clients and client replay alike) against nginx and against
h2server.py (python3-h2): header mapping, big bodies both ways, streaming
with flow control, 103, trailers, resets, GOAWAY, timeouts, and Upgrade
requests kept on HTTP/1.1."""
import hashlib
import json
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
        add_header X-Proto $server_protocol always;
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
    # an HTTP/1.1 server connection carries one request at a time: the
    # client's streams keep as many as they use at once (2 x 50) instead
    # of opening new ones (before: a third of the requests, ~130 here)
    conns = {tuple(e["client"]) for e in b.log}
    assert len(conns) <= 2 * 50 + 10, len(conns)


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


def rss_growth_limit_kb():
    """What a proxy may grow by while a client does not read: 16 MiB, 32
    under ASan (its shadow memory and quarantine)."""
    with open(H.BIN, "rb") as f:
        return (32 if b"__asan_init" in f.read() else 16) * 1024


def slow_h2_download_stays_bounded(p, size, server):
    """An HTTP/2 client that does not read for two seconds, then fetches a
    `size`-byte body whole: the body arrives intact; while the client was
    not reading, the server (a Backend or H2Server, which count what they
    send) was held back short of the body and the proxy's RSS grew by less
    than 16 MiB (32 under ASan).  Returns the sha256 the body must have."""
    want = hashlib.sha256(payload(size)).hexdigest()
    base = H.rss_kb(p.proc.pid)
    sent0 = server.sent
    import threading
    grown, sent = [], []

    def sample():
        sent.append(H.settled(lambda: server.sent - sent0, timeout=0.45, quiet=0.3))
        grown.append(H.rss_kb(p.proc.pid) - base)
    t = threading.Timer(1.2, sample)
    t.start()
    status, body = h2_get(p.port, "/bytes/%d" % size, pause=2.0)
    t.join()
    assert status == 200 and len(body) == size and hashlib.sha256(body).hexdigest() == want, (status, len(body))
    H.check_backpressure(sent[0], size, "the server")
    assert grown[0] < rss_growth_limit_kb(), "proxy RSS grew by %d kB while the client was not reading" % grown[0]
    return want


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
    slow_h2_download_stays_bounded(p, 48 * 1024 * 1024, b)
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


# ---- HTTP/2 towards the server ------------------------------------------------

UPSTREAM_LUA = '''
function response(f)
  f.response.headers["X-Upstream"] = (f.server_conn.alpn or "-") .. " " .. f.response.http_version
end
'''
UPSTREAM_PY = '''
def response(flow):
    alpn = flow.server_conn.alpn.decode() if flow.server_conn.alpn else "-"
    flow.response.headers["X-Upstream"] = alpn + " " + flow.response.http_version
'''


# mitmdump offers a server only what its client offered in ALPN, and its
# error texts differ: these tests are about mitmlua's choice.
MITMDUMP_UPSTREAM = "offers h2 upstream only to HTTP/2 clients"


def upstream_proxy(*args):
    """A proxy trusting the test CA, telling each response's server ALPN
    and HTTP version in X-Upstream."""
    s = H.script("upstream", lua=UPSTREAM_LUA, py=UPSTREAM_PY)
    return H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert, "-s", s] + list(args)).start()


@fixture
def h2_origin():
    from h2server import H2Server
    return H2Server(pki().cert, pki().key).start()


def tls_tunnel(proxy, port, cafile, alpn=None):
    """A TLS socket to localhost:port through the proxy's CONNECT."""
    import ssl
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        assert b, "proxy closed during CONNECT: %r" % buf
        buf += b
    assert H.status_of(buf) == 200, buf
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx.wrap_socket(s, server_hostname="localhost")


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split(" ")[1]), [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]], rest


@test(timeout=60)
def upstream_h2_to_nginx_for_h1_and_h2_clients():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    proc, port = start_nginx(pki().cert, pki().key)
    try:
        p = upstream_proxy()
        for args, ver in ((["--http1.1"], b"1.1"), (["--http2"], b"2")):
            r = curl2("https://localhost:%d/hello" % port, proxy=p, cacert=p.ca(), args=args)
            assert r.rc == 0 and r.status == 200 and r.body == b"hello from nginx\n\n" + ver, r
            assert H.header(r.headers, "x-proto") == "HTTP/2.0", r        # nginx's $server_protocol
            assert H.header(r.headers, "x-upstream") == "h2 HTTP/2.0", r  # flow: server ALPN, response version
            r = curl2("https://localhost:%d/big" % port, proxy=p, cacert=p.ca(), args=args)
            assert r.rc == 0 and r.body == payload(3 * 1024 * 1024) + b"\n" + ver, r
            assert H.header(r.headers, "x-proto") == "HTTP/2.0", r
        # the response line names the version the server spoke, as mitmdump's
        assert p.wait_output("<< HTTP/2.0 200 OK", 5), p.stdout[-2000:]
        # the jsonl console says the same
        j = upstream_proxy("--set", "console_format=jsonl")
        r = curl2("https://localhost:%d/hello" % port, proxy=j, cacert=j.ca(), args=["--http1.1"])
        assert r.status == 200, r
        assert j.wait_output('"server_alpn": "h2"', 5) or j.wait_output('"server_alpn":"h2"', 1), j.stdout[-2000:]
        doc = json.loads([l for l in j.stdout.splitlines() if l.startswith("{")][-1])
        assert doc["server_alpn"] == "h2" and doc["response_http_version"] == "HTTP/2.0", doc
        assert doc["http_version"] == "HTTP/1.1", doc
        # http2=false: HTTP/1.1 upstream even for an HTTP/2 client
        q = upstream_proxy("--set", "http2=false")
        r = curl2("https://localhost:%d/hello" % port, proxy=q, cacert=q.ca(), args=["--http2"])
        assert r.status == 200 and H.header(r.headers, "x-proto") == "HTTP/1.1", r
        assert H.header(r.headers, "x-upstream") == "http/1.1 HTTP/1.1", r
    finally:
        proc.terminate()
        proc.wait(10)


@test(timeout=60)
def upstream_h2_request_mapping_and_upload():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    p = upstream_proxy()
    url = "https://localhost:%d/echo" % o.port
    data = os.urandom(8 * 1024 * 1024)
    import json
    # HTTP/1.1 client: Host becomes :authority; hop-by-hop fields stay behind
    r = H.curl(url, proxy=p, cacert=p.ca(), data=data, max_time=50,
               headers=["Connection: X-Hop", "X-Hop: 1", "Keep-Alive: timeout=5", "TE: trailers",
                        "Proxy-Connection: keep-alive", "Cookie: a=1", "X-Keep: yes"])
    assert r.rc == 0 and r.status == 200, r
    assert H.header(r.headers, "x-upstream") == "h2 HTTP/2.0", r
    echo = json.loads(r.body)
    assert echo["authority"] == "localhost:%d" % o.port and echo["scheme"] == "https", echo
    assert echo["method"] == "POST" and echo["path"] == "/echo", echo
    hd = dict(echo["headers"])
    for gone in ("host", "connection", "x-hop", "keep-alive", "proxy-connection", "transfer-encoding"):
        assert gone not in hd, (gone, echo["headers"])
    assert hd["te"] == "trailers" and hd["x-keep"] == "yes" and hd["cookie"] == "a=1", echo["headers"]
    assert echo["length"] == len(data) and echo["sha256"] == hashlib.sha256(data).hexdigest(), echo
    # HTTP/2 client: cookie crumbs arrive joined (RFC 9113 §8.2.3)
    r = curl2(url, proxy=p, cacert=p.ca(), data=data, max_time=50,
              args=["--http2", "-H", "Cookie: a=1", "-H", "Cookie: b=2"])
    assert r.rc == 0 and r.status == 200, r
    echo = json.loads(r.body.rsplit(b"\n", 1)[0])
    assert dict(echo["headers"])["cookie"] == "a=1; b=2", echo["headers"]
    assert echo["length"] == len(data) and echo["sha256"] == hashlib.sha256(data).hexdigest(), echo
    assert all(alpn == "h2" for alpn, _, _ in o.log), o.log


@test
def upstream_h2_request_trailers():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    p = upstream_proxy()
    s = tls_tunnel(p, o.port, p.ca())
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost:%d\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n"
              b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n" % o.port)
    status, hdrs, rest = read_head(s)
    body = rest
    while True:
        b = s.recv(65536)
        if not b:
            break
        body += b
    s.close()
    import json
    assert status == 200, (status, hdrs)
    echo = json.loads(body)
    assert echo["length"] == 5 and echo["trailers"] == [["x-sum", "42"]], echo


@test(timeout=60)
def upstream_h2_downloads_whole_and_streamed():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    size = 5 * 1024 * 1024
    for extra in ((), ("--set", "stream_large_bodies=1m")):
        p = upstream_proxy(*extra)
        for path in ("/bytes/%d" % size, "/nolength/%d" % size):
            url = "https://localhost:%d%s" % (o.port, path)
            r = H.curl(url, proxy=p, cacert=p.ca(), max_time=50)
            assert r.rc == 0 and r.status == 200 and r.body == payload(size), (extra, path, r)
            r = curl2(url, proxy=p, cacert=p.ca(), args=["--http2"], max_time=50)
            assert r.rc == 0 and r.status == 200 and r.body == payload(size) + b"\n2", (extra, path, r)


def h2_get_full(port, path):
    """GET over h2c prior knowledge: (status, interim statuses, body, trailers)."""
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port),
                            (":path", path)], end_stream=True)
    s.sendall(conn.data_to_send())
    status, interim, body, trailers, done = None, [], [], [], False
    deadline = time.monotonic() + 20
    while not done and time.monotonic() < deadline:
        data = s.recv(1 << 20)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.InformationalResponseReceived):
                interim.append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body.append(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = ev.headers
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        s.sendall(conn.data_to_send())
    s.close()
    return status, interim, b"".join(body), trailers


def reverse_to_origin(*args):
    return H.Proxy(["--mode", "reverse:https://localhost:%d" % h2_origin().port,
                    "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert] + list(args)).start()


@test(timeout=60)
def store_streamed_bodies_from_an_h2_server():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    p = reverse_to_origin("--set", "stream_large_bodies=1m", "--set", "store_streamed_bodies=true",
                          "--set", "console_format=jsonl")
    size = 3 * 1024 * 1024
    r = H.curl(p.url + "/bytes/%d" % size)
    assert r.rc == 0 and r.status == 200 and len(r.body) == size, r
    assert H.wait_for(lambda: p.stdout.strip(), 10)
    f = json.loads(p.stdout.splitlines()[0])
    assert f["server_alpn"] == "h2" and f["response_size"] == size, f


@test(timeout=60)
def http2_ping_keepalive_pings_an_idle_server_connection():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    from h2server import H2Server
    o = H2Server(pki().cert, pki().key).start()   # its own PING count
    p = H.Proxy(["--mode", "reverse:https://localhost:%d" % o.port, "--set", "http2_ping_keepalive=1",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    c = H.Conn("127.0.0.1", p.port)
    c.send(b"GET /bytes/10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert c.response()[0] == 200
    assert o.pings == 0, o.pings          # just busy: no PING
    # idle: PINGs, about one a second, on the connection kept for the client
    assert H.wait_for(lambda: o.pings >= 2, timeout=6), o.pings
    c.send(b"GET /bytes/10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert c.response()[0] == 200
    assert o.conns == 1 and len(o.log) == 2, (o.conns, o.log)
    c.close()
    o.pings = 0
    # 0 turns them off
    q = H.Proxy(["--mode", "reverse:https://localhost:%d" % o.port, "--set", "http2_ping_keepalive=0",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert], label="no-ping").start()
    c = H.Conn("127.0.0.1", q.port)
    c.send(b"GET /bytes/10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert c.response()[0] == 200
    time.sleep(2.5)
    assert o.pings == 0, o.pings
    c.close()
    o.stop()


@test(timeout=90)
def upstream_h2_flow_control_with_a_slow_client():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    # streamed over h2 both ways: a client that does not read holds the
    # server back through the windows instead of growing the proxy
    p = reverse_to_origin("--set", "stream_large_bodies=1m")
    size = 48 * 1024 * 1024
    want = slow_h2_download_stays_bounded(p, size, h2_origin())
    # the same for an HTTP/1.1 client that does not read
    base = H.rss_kb(p.proc.pid)
    sent0 = h2_origin().sent
    with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % size)
        time.sleep(1.5)  # the server could send everything by now
        sent = H.settled(lambda: h2_origin().sent - sent0)
        grown = H.rss_kb(p.proc.pid) - base
        H.check_backpressure(sent, size, "the h2 server")
        hdr, got, digest = H.recv_response_sha256(s, size)
    assert hdr.startswith(b"HTTP/1.1 200"), hdr
    assert got == size and digest == want, got
    assert grown < rss_growth_limit_kb(), "proxy RSS grew by %d kB while the HTTP/1.1 client was not reading" % grown


@test
def upstream_h2_early_hints_and_trailers():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    p = upstream_proxy("--flow-detail", "2")
    url = "https://localhost:%d/early-hints" % o.port
    # (curl -D shows the answer to its CONNECT first)
    r = H.curl(url, proxy=p, cacert=p.ca())
    assert r.rc == 0 and [b[0] for b in r.blocks] == [200, 103, 200] and r.body == b"after the hints\n", r
    assert H.header(r.blocks[1][2], "Link") == "</style.css>; rel=preload", r.blocks
    r = curl2(url, proxy=p, cacert=p.ca(), args=["--http2"])
    assert r.rc == 0 and [b[0] for b in r.blocks] == [200, 103, 200] and r.body == b"after the hints\n\n2", r
    assert H.header(r.blocks[1][2], "Link") == "</style.css>; rel=preload", r.blocks
    # trailers reach an HTTP/2 client, and the flow
    q = reverse_to_origin("--flow-detail", "2")
    status, interim, body, trailers = h2_get_full(q.port, "/trailers")
    assert status == 200 and body == b"body before trailers\n", (status, body)
    assert ("x-checksum", "abc123") in trailers and ("grpc-status", "0") in trailers, trailers
    assert q.wait_output("x-checksum: abc123", 5), q.stdout[-2000:]
    status, interim, body, trailers = h2_get_full(q.port, "/early-hints")
    assert status == 200 and interim == [103] and body == b"after the hints\n", (status, interim, body)


@test
def reverse_h2_client_to_h2_origin():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    # the Host reverse mode sets is the :authority the origin gets, not
    # the one the client sent to the proxy
    o = h2_origin()
    q = reverse_to_origin()
    status, interim, body, trailers = h2_get_full(q.port, "/echo")
    import json
    echo = json.loads(body)
    assert status == 200 and echo["authority"] == "localhost:%d" % o.port, echo
    assert "host" not in dict(echo["headers"]), echo


def h2_many(port, paths, reset=(), first=None, timeout=30):
    """Open one h2c stream per path at once through the proxy (after the
    stream for `first` has ended, on the same connection, if given);
    streams whose path is in `reset` are reset (CANCEL) once every other
    stream has ended.  Returns {path: (status, body)} for the others."""
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    conn.increment_flow_control_window(16 << 20)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    by_sid = {}
    if first:
        fsid = conn.get_next_available_stream_id()
        conn.send_headers(fsid, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port),
                                 (":path", first)], end_stream=True)
        s.sendall(conn.data_to_send())
        done = False
        while not done:
            for ev in conn.receive_data(s.recv(1 << 20)):
                done = done or (isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset))
                                and ev.stream_id == fsid)
            s.sendall(conn.data_to_send())
    for path in paths:
        sid = conn.get_next_available_stream_id()
        by_sid[sid] = path
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port),
                                (":path", path)], end_stream=True)
    s.sendall(conn.data_to_send())
    got, ended = {}, set()
    deadline = time.monotonic() + timeout
    want = set(sid for sid, p in by_sid.items() if p not in reset)
    while not want <= ended and time.monotonic() < deadline:
        data = s.recv(1 << 20)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                got[ev.stream_id] = [int(dict(ev.headers)[":status"]), b""]
            elif isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id][1] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended.add(ev.stream_id)
        s.sendall(conn.data_to_send())
    for sid, p in by_sid.items():
        if p in reset:
            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    s.sendall(conn.data_to_send())
    s.close()
    return dict((by_sid[sid], tuple(v)) for sid, v in got.items() if sid in want)


@test(timeout=60)
def upstream_h2_streams_share_a_connection():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    # an HTTP/2 client's concurrent streams to an HTTP/2 server are streams
    # of one server connection, even a burst that arrives before it is
    # open; one failing or given up on leaves the others alone
    import h2.settings  # noqa: F401 (h2_many uses it)
    from h2server import H2Server
    o = H2Server(pki().cert, pki().key).start()
    p = H.Proxy(["--mode", "reverse:https://localhost:%d" % o.port, "--set", "read_timeout=2",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    sizes = [10, 2000, 300000, 5, 70000, 1]
    paths = ["/bytes/%d" % n for n in sizes] + ["/rst", "/stall"]
    got = h2_many(p.port, paths)
    for n in sizes:
        assert got["/bytes/%d" % n] == (200, payload(n)), (n, got.get("/bytes/%d" % n, (None, b""))[0])
    assert got["/rst"][0] == 502 and b"INTERNAL_ERROR" in got["/rst"][1], got["/rst"]
    assert got["/stall"][0] == 504, got["/stall"]
    assert o.conns == 1, o.conns
    # a refused stream, and the streams past a GOAWAY, are retried together
    # on one new connection (the refused one comes first: a stream past the
    # GOAWAY is retried once already, and whether the server still saw it
    # before going away depends on how its reads cut our frames)
    paths = ["/bytes/%d" % n for n in sizes[:3]] + ["/refuse-once", "/goaway-after"] + \
        ["/bytes/%d" % n for n in sizes[3:]]
    got = h2_many(p.port, paths, first="/bytes/3")
    for n in sizes:
        assert got["/bytes/%d" % n] == (200, payload(n)), (n, got.get("/bytes/%d" % n, (None, b""))[0])
    assert got["/goaway-after"] == (200, b"bye!\n") and got["/refuse-once"] == (200, b"second try\n"), got
    assert o.conns == 3, o.conns
    # a stream the client resets is reset upstream; the connection goes on
    got = h2_many(p.port, ["/stall", "/bytes/100"], reset=("/stall",), first="/bytes/4")
    assert got == {"/bytes/100": (200, payload(100))}, got
    assert o.conns == 4, o.conns
    r = curl2("http://127.0.0.1:%d/bytes/7" % p.port, args=["--http2-prior-knowledge"])
    assert r.body == payload(7) + b"\n2", r
    assert p.proc.poll() is None
    o.stop()


@test(timeout=90)
def h2load_reverse_to_nginx_over_h2():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    # 4 clients x 30 streams at once: with a server connection per stream
    # the test nginx (64 worker_connections) would refuse most of them
    proc, port = start_nginx(pki().cert, pki().key)
    try:
        p = H.Proxy(["--mode", "reverse:https://localhost:%d" % port, "--set", "flow_detail=0",
                     "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
        n = 2000
        r = subprocess.run(["h2load", "-n", str(n), "-c", "4", "-m", "30", "http://127.0.0.1:%d/hello" % p.port],
                           capture_output=True, timeout=80)
        out = r.stdout.decode()
        assert "%d succeeded, 0 failed, 0 errored, 0 timeout" % n in out, out
        r = subprocess.run(["h2load", "-n", "20", "-c", "2", "-m", "10", "http://127.0.0.1:%d/big" % p.port],
                           capture_output=True, timeout=80)
        out = r.stdout.decode()
        assert "20 succeeded, 0 failed" in out and "(%d) data" % (20 * 3 * 1024 * 1024) in out, out
    finally:
        proc.terminate()
        proc.wait(10)


@test(timeout=60)
def upstream_h2_errors():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    p = upstream_proxy("--set", "read_timeout=2")
    base = "https://localhost:%d" % o.port
    r = H.curl(base + "/rst", proxy=p, cacert=p.ca())
    assert r.status == 502 and b"reset the HTTP/2 stream (INTERNAL_ERROR)" in r.body, r
    r = curl2(base + "/rst", proxy=p, cacert=p.ca(), args=["--http2"])
    assert r.status == 502 and b"INTERNAL_ERROR" in r.body, r
    # a reset on a reused connection is not retried (the server saw it)
    n = o.counts["/rst"]
    r = H.curl([base + "/bytes/1", base + "/rst"], proxy=p, cacert=p.ca())
    assert r.status == 502 and o.counts["/rst"] == n + 1, (r, o.counts)
    r = H.curl(base + "/no-status", proxy=p, cacert=p.ca())
    assert r.status == 502 and b"malformed HTTP/2 response" in r.body, r   # not blamed on the server
    t0 = time.monotonic()
    r = H.curl(base + "/stall", proxy=p, cacert=p.ca())
    assert r.status == 504 and b"read_timeout" in r.body and time.monotonic() - t0 < 10, r
    # a refused stream is retried once, on a new connection
    r = H.curl(base + "/refuse-once", proxy=p, cacert=p.ca())
    assert r.status == 200 and r.body == b"second try\n", r
    assert o.counts["/refuse-once"] == 2, o.counts
    # so is one past the last stream of a GOAWAY
    r = curl2(base + "/goaway-first", proxy=p, cacert=p.ca(), args=["--http2"])
    assert r.status == 200 and r.body == b"second try\n\n2", r
    assert o.counts["/goaway-first"] == 2, o.counts
    assert p.proc.poll() is None
    assert p.wait_output("reset the HTTP/2 stream", 5), p.stdout[-2000:]


@test
def upstream_h2_reuse_and_goaway():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    from h2server import H2Server
    o = H2Server(pki().cert, pki().key).start()
    p = upstream_proxy()
    base = "https://localhost:%d" % o.port
    # one client connection, requests one after another: one h2 connection
    r = H.curl([base + "/bytes/10", base + "/bytes/20", base + "/bytes/30"], proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(10) + payload(20) + payload(30), r
    assert o.conns == 1, o.conns
    # after the server's GOAWAY the connection takes no new stream
    r = H.curl([base + "/goaway-after", base + "/bytes/5"], proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.body == b"bye!\n" + payload(5), r
    assert o.conns == 3, o.conns
    o.stop()


@test
def upstream_mode_tunnels_then_h2():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    # upstream mode: CONNECT through the upstream proxy, then TLS with ALPN
    # inside the tunnel (here the upstream proxy is a second mitmlua, which
    # speaks HTTP/2 to its clients and to the origin)
    o = h2_origin()
    b = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert], label="upstream proxy").start()
    s = H.script("upstream", lua=UPSTREAM_LUA, py=UPSTREAM_PY)
    a = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % b.port, "-s", s,
                 "--set", "ssl_verify_upstream_trusted_ca=" + b.ca()]).start()
    urls = ["https://localhost:%d/bytes/%d" % (o.port, n) for n in (10, 100000)]
    r = H.curl(urls, proxy=a, cacert=a.ca())
    assert r.rc == 0 and r.body == payload(10) + payload(100000), r
    assert H.header(r.headers, "x-upstream") == "h2 HTTP/2.0" and H.header(r.headers, "x-proto") == "HTTP/2.0", r
    assert b.wait_output("GET https://localhost:%d/bytes/100000 HTTP/2.0" % o.port, 5), b.stdout[-2000:]


@test
def upstream_upgrade_request_stays_http11():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    p = upstream_proxy()
    s = tls_tunnel(p, o.port, p.ca())
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % o.port)
    status, hdrs, _ = read_head(s)
    s.close()
    assert status == 101 and H.header(hdrs, "x-proto") == "HTTP/1.1", (status, hdrs)
    assert ("http/1.1", "GET", "/ws") in o.log, o.log
    # the next request on a new tunnel is HTTP/2 again
    r = H.curl("https://localhost:%d/bytes/3" % o.port, proxy=p, cacert=p.ca())
    assert r.status == 200 and H.header(r.headers, "x-proto") == "HTTP/2.0", r


@test
def client_replay_over_h2():
    H.skip_if_mitmdump(MITMDUMP_UPSTREAM)
    o = h2_origin()
    dump = os.path.join(H.tmpdir("h2creplay"), "flows")
    p = upstream_proxy("-w", dump)
    r = H.curl("https://localhost:%d/echo?replayed" % o.port, proxy=p, cacert=p.ca())
    assert r.status == 200, r
    assert p.stop() == 0
    # the dump keeps the server's ALPN
    lua = H.write(os.path.join(H.tmpdir("alpn"), "alpn.lua"),
                  'function response(f) f.response.headers["X-Dump-Alpn"] = f.server_conn.alpn end\n')
    r = subprocess.run([H.BIN, "-n", "-r", dump, "-s", lua, "--flow-detail", "2"], capture_output=True, timeout=30)
    assert b"X-Dump-Alpn: h2" in r.stdout, r
    before = len(o.log)
    conf = os.path.join(H.tmpdir("conf"), "confdir")
    r = subprocess.run([H.BIN, "--confdir", conf, "-n", "-C", dump,
                        "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    assert o.log[before:] == [("h2", "GET", "/echo?replayed")], o.log
    assert b"<< HTTP/2.0 200" in r.stdout, r.stdout
    # concurrent lanes share one HTTP/2 connection
    from h2server import H2Server
    o2 = H2Server(pki().cert, pki().key).start()
    dump2 = os.path.join(H.tmpdir("h2creplay"), "flows")
    p = upstream_proxy("-w", dump2)
    urls = ["https://localhost:%d/bytes/%d" % (o2.port, n) for n in range(1, 9)]
    r = H.curl(urls, proxy=p, cacert=p.ca())
    assert r.rc == 0 and p.stop() == 0, r
    conns = o2.conns
    r = subprocess.run([H.BIN, "--confdir", conf, "-n", "-C", dump2, "--set", "client_replay_concurrency=4",
                        "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.count(b"<< HTTP/2.0 200") == 8, r
    assert o2.conns == conns + 1, (conns, o2.conns)
    o2.stop()


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
