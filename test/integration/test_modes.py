#!/usr/bin/python3
"""Proxy modes and connection-level options: --mode socks5 and transparent,
tcp_hosts, block_global / block_private, upstream_auth and
connection_strategy, with real curl and raw sockets against backend.py.

Transparent mode and block_global need addresses and netfilter rules that
must not touch the machine: those tests run inside a private user + network
namespace (unshare -rn), where this file re-runs itself as a helper.  When
the kernel or sandbox refuses the namespace or the nft rule, the test is
reported as a "# SKIP" line that is not counted as a pass."""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload

HERE = os.path.dirname(os.path.abspath(__file__))


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def backend():
    return Backend().start()


@fixture
def backend6():
    return Backend(host="::1").start()


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


@fixture
def socks():
    """A socks5 proxy that trusts the test PKI upstream."""
    return H.Proxy(["--mode", "socks5", "--set",
                    "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()


def socks_curl(proxy, url, hostname=True, **kw):
    """curl -x socks5h:// (what --socks5-hostname does: the proxy resolves
    the name) or socks5:// (--socks5: curl resolves, sends an address)."""
    scheme = "socks5h" if hostname else "socks5"
    return H.curl(url, proxy="%s://%s:%d" % (scheme, proxy.host, proxy.port), **kw)


def socks_connect(port, target, greeting=b"\x05\x01\x00", timeout=10):
    """Greeting + CONNECT request over a raw socket; returns (method reply,
    request reply, socket) — the caller closes the socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(greeting)
    m = recv_exact(s, 2)
    s.sendall(target)
    return m, recv_exact(s, 10), s


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        b = s.recv(n - len(got))
        if not b:
            break
        got += b
    return got


def req_domain(host, port):
    h = host.encode()
    return b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack("!H", port)


def req_ipv4(ip, port):
    return b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port)


def only_mitmlua():
    if H.Proxy().is_mitmdump:
        H.skip("mitmlua's own output and options")


# ---- socks5 ---------------------------------------------------------------------

@test
def socks5_domain_http():
    b = backend()
    p = socks()
    r = socks_curl(p, "http://localhost:%d/echo" % b.port)
    assert r.rc == 0 and r.status == 200, r
    assert json.loads(r.body)["path"] == "/echo", r
    assert p.wait_output("GET http://localhost:%d/echo" % b.port), p.stdout


@test
def socks5_ipv4_http():
    b = backend()
    p = socks()
    r = socks_curl(p, b.url("/bytes/3000"), hostname=False)
    assert r.rc == 0 and r.body == payload(3000), r
    assert p.wait_output("GET http://127.0.0.1:%d/bytes/3000" % b.port), p.stdout


@test
def socks5_ipv6_literal_http():
    b = backend6()
    p = socks()
    r = socks_curl(p, "http://[::1]:%d/bytes/10" % b.port, hostname=False)
    assert r.rc == 0 and r.body == payload(10), r
    assert p.wait_output("GET http://[::1]:%d/bytes/10" % b.port), p.stdout


@test
def socks5_https_is_intercepted():
    b = tls_backend()
    p = socks()
    # the client must trust mitmlua's CA: the certificate was minted
    r = socks_curl(p, "https://localhost:%d/bytes/100" % b.port, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(100), r
    assert p.wait_output("GET https://localhost:%d/bytes/100" % b.port), p.stdout
    r = socks_curl(p, "https://127.0.0.1:%d/bytes/7" % b.port, hostname=False, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(7), r
    r = socks_curl(p, "https://localhost:%d/bytes/1" % b.port, cacert=pki().ca_cert)
    assert r.rc != 0, r


@test
def socks5_request_bytes_sent_early_are_kept():
    """A client that sends its HTTP request together with the SOCKS request."""
    b = backend()
    p = socks()
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(b"\x05\x01\x00" + req_ipv4("127.0.0.1", b.port) +
                  b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    assert got[:2] == b"\x05\x00" and got[2:12] == b"\x05\x00\x00\x01" + b"\0" * 6, got
    assert got[12:].startswith(b"HTTP/1.1 200") and got.endswith(payload(5)), got


@test
def socks5_refused_targets_get_socks_error_codes():
    only_mitmlua()
    free = H.free_port()
    p = H.Proxy(["--mode", "socks5", "--set", "connection_strategy=eager"]).start()
    m, rep, s = socks_connect(p.port, req_ipv4("127.0.0.1", free))
    s.close()
    assert m == b"\x05\x00" and rep[:2] == b"\x05\x05", (m, rep)   # connection refused
    m, rep, s = socks_connect(p.port, req_domain("nothing.invalid", 80))
    s.close()
    assert rep[:2] == b"\x05\x04", rep                              # host unreachable
    assert p.wait_output("Cannot connect to 127.0.0.1:%d" % free, stream="stderr"), p.stderr
    # a reachable one still works on the same proxy
    b = backend()
    r = socks_curl(p, b.url("/bytes/4"), hostname=False)
    assert r.rc == 0 and r.body == payload(4), r


@test
def socks5_lazy_answers_then_fails_the_request():
    """lazy (the default): the tunnel opens at once; the request fails 502."""
    only_mitmlua()
    free = H.free_port()
    p = socks()
    r = socks_curl(p, "http://127.0.0.1:%d/" % free, hostname=False)
    assert r.rc == 0 and r.status == 502 and b"refused" in r.body, r


@test
def socks5_bad_bytes():
    p = socks()
    # SOCKS4: not our protocol; closed without an answer
    data, closed = H.raw("127.0.0.1", p.port, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00")
    assert data == b"" and closed, data
    # an HTTP client on the SOCKS port
    data, closed = H.raw("127.0.0.1", p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data == b"" and closed, data
    # only username/password offered: no acceptable method
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x02")
    assert data == b"\x05\xff" and closed, data
    # BIND: command not supported
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50")
    assert data == b"\x05\x00\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00" and closed, data
    # unknown address type
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x00\x05\x01\x00\x09\x00")
    assert data == b"\x05\x00\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00" and closed, data
    # a domain name with a NUL byte
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x00\x05\x01\x00\x03\x03a\x00b\x00\x50")
    assert data[:4] == b"\x05\x00\x05\x04" and closed, data
    # a truncated request, then the client goes away: nothing breaks
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x00\x05\x01\x00\x03\x20abc", timeout=1,
                         half_close=True)
    assert data == b"\x05\x00", data
    b = backend()
    r = socks_curl(p, b.url("/bytes/9"), hostname=False)
    assert r.rc == 0 and r.body == payload(9), r


# ---- tcp_hosts --------------------------------------------------------------------

def read_dump(dump, *filt):
    out = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "console_format=jsonl"] + list(filt),
                         capture_output=True, timeout=10)
    return [json.loads(l) for l in out.stdout.decode().splitlines()]


@test
def tcp_hosts_are_relayed_raw():
    only_mitmlua()
    b = backend()
    dump = os.path.join(H.tmpdir("tcp"), "flows.mitmlua")
    p = H.Proxy(["--set", r"tcp_hosts=^127\.0\.0\.1$", "-w", dump]).start()
    # through CONNECT the bytes are relayed untouched: no HTTP flow
    r = H.curl(b.url("/bytes/2000"), proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.body == payload(2000), r
    # a non-HTTP protocol works too (raw bytes both ways)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % b.port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert H.status_of(head) == 200, head
        s.sendall(b"HEAD /bytes/1 HTTP/1.0\r\n\r\n")
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n"), got
    # an address that does not match is intercepted as usual
    r = H.curl("http://localhost:%d/bytes/5" % b.port, proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.body == payload(5), r
    assert p.wait_output("GET http://localhost:%d/bytes/5" % b.port), p.stdout
    assert p.stop() == 0
    assert "/bytes/2000" not in p.stdout, p.stdout
    flows = read_dump(dump)
    tcp = [f for f in flows if f["type"] == "tcp"]
    assert len(tcp) == 2 and all(f["server"] == "127.0.0.1:%d" % b.port for f in tcp), flows
    assert len(flows) == 3, flows


@test
def tcp_hosts_in_socks5_mode():
    only_mitmlua()
    b = tls_backend()
    dump = os.path.join(H.tmpdir("tcp"), "flows.mitmlua")
    p = H.Proxy(["--mode", "socks5", "--set", "tcp_hosts=localhost", "-w", dump,
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    # as in mitmproxy, TLS comes off first (the proxy's CA signs), then the
    # plaintext is relayed as TCP: the HTTP request inside is bytes, no flow
    r = socks_curl(p, "https://localhost:%d/bytes/11" % b.port, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(11), r
    # a relayed target that refuses (lazy: SOCKS5 said yes before): closed
    m, rep, s = socks_connect(p.port, req_domain("localhost", H.free_port()))
    assert m == b"\x05\x00" and rep[:2] == b"\x05\x00", rep
    s.settimeout(10)
    assert s.recv(10) == b""
    s.close()
    assert p.stop() == 0
    flows = read_dump(dump)
    assert [f["type"] for f in flows] == ["tcp", "tcp"], flows
    back = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "flow_detail=3"], capture_output=True,
                          timeout=10).stdout.decode()
    assert "GET /bytes/11 HTTP/1.1" in back, back   # the plaintext was recorded


@test
def tcp_hosts_bad_pattern_or_mode_is_a_usage_error():
    only_mitmlua()
    r = subprocess.run([H.BIN, "--set", "tcp_hosts=(x"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"tcp_hosts" in r.stderr and len(r.stderr.splitlines()) == 1, r
    r = subprocess.run([H.BIN, "--mode", "upstream:http://127.0.0.1:1", "--set", "tcp_hosts=x"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"tcp_hosts" in r.stderr, r


# ---- upstream_auth ----------------------------------------------------------------

class RecordingUpstreamProxy:
    """A minimal upstream HTTP proxy: records each request head it gets;
    answers CONNECT with 200 and relays the tunnel to its target, and
    forwards plain absolute-form requests to the target as they are."""

    def __init__(self, force=None):
        self.force = force   # (host, port): every target goes there
        self.heads = []
        self.peers = []      # the address each connection came from
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.peers.append(c.getpeername()[0])
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(1)
                if not d:
                    return
                head += d
            self.heads.append(head.decode("latin-1"))
            method, target = head.split(b" ")[:2]
            if method == b"CONNECT":
                host, port = target.rsplit(b":", 1)
                up = socket.create_connection(self.force or (host.decode(), int(port)), timeout=10)
                c.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
            else:
                hostport = target.split(b"/")[2]
                host, port = hostport.rsplit(b":", 1)
                up = socket.create_connection((host.decode(), int(port)), timeout=10)
                up.sendall(head)
            relay(c, up)
        except OSError:
            pass

    def auth_values(self):
        out = []
        for h in self.heads:
            for line in h.split("\r\n"):
                if line.lower().startswith("proxy-authorization:"):
                    out.append(line.split(":", 1)[1].strip())
        return out


def relay(a, b):
    def pump(x, y):
        try:
            while True:
                d = x.recv(65536)
                if not d:
                    break
                y.sendall(d)
        except OSError:
            pass
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    threading.Thread(target=pump, args=(b, a), daemon=True).start()
    pump(a, b)


@test
def upstream_auth_reaches_the_upstream_proxy():
    only_mitmlua()
    b = backend()
    tb = tls_backend()
    up = RecordingUpstreamProxy()
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port,
                 "--set", "upstream_auth=user:s3cret:x",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    want = "Basic " + base64.b64encode(b"user:s3cret:x").decode()
    # a plain request: the header is on the request itself
    r = H.curl(b.url("/echo"), proxy=p, headers=["Proxy-Authorization: Basic Y2xpZW50"])
    assert r.rc == 0 and r.status == 200, r
    sent = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
    assert sent.get("proxy-authorization") == want, sent   # ours, not the client's
    # https: on our CONNECT to the upstream proxy, and not inside the tunnel
    r = H.curl("https://localhost:%d/echo" % tb.port, proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.status == 200, r
    inner = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
    assert "proxy-authorization" not in inner, inner
    connects = [h for h in up.heads if h.startswith("CONNECT ")]
    assert connects and "Proxy-Authorization: %s\r\n" % want in connects[0], up.heads
    assert up.auth_values() == [want, want], up.heads


@test
def upstream_auth_in_reverse_mode_is_authorization():
    only_mitmlua()
    b = backend()
    p = H.Proxy(["--mode", "reverse:http://127.0.0.1:%d" % b.port, "--set", "upstream_auth=a:b"]).start()
    r = H.curl(p.url + "/echo")
    sent = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
    assert sent.get("authorization") == "Basic YTpi", sent


@test
def reverse_mode_points_alt_svc_at_the_proxy():
    """mitmproxy's update_alt_svc (keep_alt_svc_header=false): each
    host:port in Alt-Svc becomes the proxy's port; fields are joined."""
    only_mitmlua()
    b = backend()
    q = "/headers?Alt-Svc=h3%3D%22alt.example%3A8443%22%3B%20ma%3D60&Alt-Svc=h2%3D%22%3A443%22"
    p = H.Proxy(["--mode", "reverse:http://127.0.0.1:%d" % b.port]).start()
    r = H.curl(p.url + q)
    assert r.status == 200, r
    assert [v for k, v in r.headers if k.lower() == "alt-svc"] == \
        ['h3=":%d"; ma=60, h2=":%d"' % (p.port, p.port)], r.headers
    # kept as sent with keep_alt_svc_header, and outside reverse mode
    for args, url in ((["--mode", "reverse:http://127.0.0.1:%d" % b.port, "--set", "keep_alt_svc_header=true"],
                       None), ([], b.url(q))):
        p2 = H.Proxy(args).start()
        r = H.curl(url or p2.url + q, proxy=None if url is None else p2)
        assert [v for k, v in r.headers if k.lower() == "alt-svc"] == ['h3="alt.example:8443"; ma=60',
                                                                       'h2=":443"'], (args, r.headers)


@test
def upstream_auth_without_colon_is_a_usage_error():
    only_mitmlua()
    r = subprocess.run([H.BIN, "--set", "upstream_auth=nocolon"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"upstream_auth" in r.stderr and len(r.stderr.splitlines()) == 1, r


# ---- http_connect_upstream ---------------------------------------------------------

def connects(up):
    return [h for h in up.heads if h.startswith("CONNECT ")]


def tunnel_both_ways(p, b, tb):
    """Through p: an intercepted tunnel (curl --proxytunnel, plain HTTP
    inside) and one that ignore_hosts passes through (TLS end to end).
    mitmdump 8.1.1 intercepts the second one too in upstream mode: there,
    only the first."""
    r = H.curl(b.url("/echo"), proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.status == 200, r
    inner = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
    if not H.IS_MITMDUMP:
        r2 = H.curl("https://localhost:%d/bytes/5" % tb.port, proxy=p, cacert=pki().ca_cert)
        assert r2.rc == 0 and r2.body == payload(5), r2
    return inner


@test
def http_connect_upstream_hook_sets_headers_of_our_connect():
    """The same script's Python form passes against mitmdump 8.1.1, but for
    the Host header (mitmproxy 11+'s http_connect_send_host_header)."""
    b, tb = backend(), tls_backend()
    up = RecordingUpstreamProxy()
    log = os.path.join(H.tmpdir("hcu"), "seen")
    s = H.script("hcu", lua='''
function http_connect_upstream(flow)
  local r = flow.request
  local f = io.open(%s, "a")
  f:write(r.method, " ", r.host, ":", r.port, " ", r.headers["Proxy-Authorization"] or "-", " ",
          flow.server_conn.address[2], "\\n")
  f:close()
  r.headers["X-Upstream-Token"] = "t-" .. r.port
end
''' % H.lua_quote(log), py='''
def http_connect_upstream(flow):
    r = flow.request
    with open(%r, "a") as f:
        f.write("%%s %%s:%%d %%s %%d\\n" %% (r.method, r.host, r.port, r.headers.get("Proxy-Authorization", "-"),
                                          flow.server_conn.address[1]))
    r.headers["X-Upstream-Token"] = "t-%%d" %% r.port
''' % log)
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port, "-s", s, "--set", "upstream_auth=u:pw",
                 "--set", "ignore_hosts=^localhost:"]).start()
    inner = tunnel_both_ways(p, b, tb)
    assert "x-upstream-token" not in inner, inner   # on the CONNECT only
    auth = "Basic " + base64.b64encode(b"u:pw").decode()
    heads = connects(up)
    n = 1 if H.IS_MITMDUMP else 2
    assert len(heads) == n, up.heads
    for h, (host, port) in zip(heads, (("127.0.0.1", b.port), ("localhost", tb.port))):
        assert h.startswith("CONNECT %s:%d HTTP/1.1\r\n" % (host, port)), h
        want = ["Proxy-Authorization: " + auth, "X-Upstream-Token: t-%d" % port]
        if not H.IS_MITMDUMP:
            want.append("Host: %s:%d" % (host, port))
        for line in want:
            assert "\r\n%s\r\n" % line in h, (line, h)
    # the hook saw mitmproxy's flow: the CONNECT to the target, the upstream
    # proxy as the server, and not yet upstream_auth's header (mitmproxy runs
    # the scripts' hooks before its upstream_auth addon)
    assert H.read(log).splitlines() == ["CONNECT 127.0.0.1:%d - %d" % (b.port, up.port),
                                        "CONNECT localhost:%d - %d" % (tb.port, up.port)][:n], H.read(log)


@test
def without_the_hook_our_connect_is_unchanged():
    only_mitmlua()
    b, tb = backend(), tls_backend()
    for extra, host_line in (([], True), (["--set", "http_connect_send_host_header=false"], False)):
        up = RecordingUpstreamProxy()
        p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port, "--set", "ignore_hosts=^localhost:"]
                    + extra).start()
        tunnel_both_ways(p, b, tb)
        want = ["CONNECT %s HTTP/1.1\r\n%s\r\n" % (a, "Host: %s\r\n" % a if host_line else "")
                for a in ("127.0.0.1:%d" % b.port, "localhost:%d" % tb.port)]
        assert connects(up) == want, (extra, up.heads)
        p.stop()


@test
def http_connect_upstream_reaches_a_real_upstream_proxy():
    """mitmlua in regular mode as the upstream proxy: its connect hook
    records the CONNECT headers it got."""
    only_mitmlua()
    b = backend()
    log = os.path.join(H.tmpdir("hcu"), "upstream-saw")
    rec = H.script("rec", lua='''
function connect(flow)
  local f = io.open(%s, "a")
  for name, value in flow.request.headers:items() do f:write(name, ": ", value, "\\n") end
  f:close()
end
''' % H.lua_quote(log), py="")
    upstream = H.Proxy(["-s", rec], label="upstream").start()
    s = H.script("hcu", lua='''
function http_connect_upstream(flow)
  flow.request.headers["X-Upstream-Token"] = "secret-1"
end
''', py="")
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % upstream.port, "-s", s]).start()
    r = H.curl(b.url("/bytes/7"), proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.body == payload(7), r
    assert H.read(log).splitlines() == ["Host: 127.0.0.1:%d" % b.port, "X-Upstream-Token: secret-1"], H.read(log)


@test
def http_connect_upstream_kill_fails_the_tunnel():
    only_mitmlua()
    b = backend()
    up = RecordingUpstreamProxy()
    s = H.script("hcu", lua="function http_connect_upstream(flow) flow:kill() end\n", py="")
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port, "-s", s]).start()
    r = H.curl(b.url("/bytes/7"), proxy=p, args=["--proxytunnel"])
    assert r.status == 502 and b"killed by a script" in r.body, r
    assert connects(up) == [], up.heads


# ---- connect_addr ---------------------------------------------------------------

@test
def connect_addr_is_the_source_of_server_connections():
    only_mitmlua()
    b = Backend().start()    # its own log
    p = H.Proxy(["--set", "connect_addr=127.0.0.2"]).start()
    assert H.curl(b.url("/bytes/3"), proxy=p).status == 200
    up = RecordingUpstreamProxy(force=("127.0.0.1", b.port))
    u = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port, "--set", "connect_addr=127.0.0.3"]).start()
    assert H.curl(b.url("/bytes/4"), proxy=u, args=["--proxytunnel"]).status == 200
    # the backend sees us, then the upstream proxy; the upstream proxy sees us
    assert [e["client"][0] for e in b.log] == ["127.0.0.2", "127.0.0.1"], b.log
    assert up.peers == ["127.0.0.3"], up.peers
    # without it: the system's choice (127.0.0.1 towards 127.0.0.1)
    d = H.Proxy(label="default").start()
    assert H.curl(b.url("/bytes/5"), proxy=d).status == 200
    assert b.log[-1]["client"][0] == "127.0.0.1", b.log
    # an address the host does not have fails the flow, and a non-address
    # is a usage error
    x = H.Proxy(["--set", "connect_addr=192.0.2.1"], label="unbindable").start()
    r = H.curl(b.url("/bytes/6"), proxy=x)
    assert r.status == 502 and b"connect_addr" in r.body, r
    # ... and so does the eager strategy's first try of a tunnel's target
    e = H.Proxy(["--set", "connect_addr=192.0.2.1", "--set", "connection_strategy=eager"], label="eager").start()
    data = connect_status(e, "127.0.0.1:%d" % b.port)
    assert H.status_of(data) == 502 and b"connect_addr" in data, data
    rc = subprocess.run([H.BIN, "-n", "--set", "connect_addr=localhost"], capture_output=True, timeout=10)
    assert rc.returncode == 2 and b"connect_addr" in rc.stderr and len(rc.stderr.splitlines()) == 1, rc


# ---- connection_strategy ----------------------------------------------------------

def connect_status(p, target):
    data, _ = H.raw("127.0.0.1", p.port, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                    % (target.encode(), target.encode()), timeout=3)
    return data


@test
def eager_refuses_unreachable_connect_targets():
    only_mitmlua()
    free = H.free_port()
    p = H.Proxy(["--set", "connection_strategy=eager",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    data = connect_status(p, "127.0.0.1:%d" % free)
    assert H.status_of(data) == 502 and b"Cannot connect to 127.0.0.1:%d" % free in data, data
    assert b"refused" in data, data
    data = connect_status(p, "nowhere.invalid:443")
    assert H.status_of(data) == 502 and b"DNS" in data, data
    # reachable targets work as before
    b = tls_backend()
    r = H.curl("https://localhost:%d/bytes/6" % b.port, proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(6), r
    b2 = backend()
    r = H.curl(b2.url("/bytes/6"), proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.body == payload(6), r
    # the refused CONNECT is an error flow in the output
    assert p.wait_output("Cannot connect to 127.0.0.1:%d" % free), p.stdout


@test
def eager_in_upstream_mode_leaves_the_target_to_the_upstream_proxy():
    """The target may exist only behind the upstream proxy (here: a name
    that never resolves, which the upstream proxy routes to the backend)."""
    only_mitmlua()
    b = backend()
    up = RecordingUpstreamProxy(force=("127.0.0.1", b.port))
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port,
                 "--set", "connection_strategy=eager"]).start()
    r = H.curl("http://hidden.invalid:%d/bytes/8" % b.port, proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.body == payload(8), r
    assert any(h.startswith("CONNECT hidden.invalid:") for h in up.heads), up.heads


@test
def lazy_answers_connect_at_once():
    only_mitmlua()
    free = H.free_port()
    p = H.Proxy(["--set", "connection_strategy=lazy"]).start()
    data = connect_status(p, "127.0.0.1:%d" % free)
    assert H.status_of(data) == 200, data


@test
def bad_connection_strategy_is_a_usage_error():
    only_mitmlua()
    r = subprocess.run([H.BIN, "--set", "connection_strategy=sometimes"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"connection_strategy" in r.stderr and len(r.stderr.splitlines()) == 1, r


@test
def proxyauth_in_transparent_mode_is_a_usage_error():
    only_mitmlua()
    r = subprocess.run([H.BIN, "--mode", "transparent", "--set", "proxyauth=u:p"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"proxyauth" in r.stderr and len(r.stderr.splitlines()) == 1, r


@test
def socks5_username_password():
    # --proxyauth in socks5 mode asks for RFC 1929 username/password, as mitmproxy does
    b = backend()
    p = H.Proxy(["--mode", "socks5", "--set", "proxyauth=alice:s3cret"]).start()
    url = "socks5h://alice:s3cret@127.0.0.1:%d" % p.port
    r = H.curl(b.url("/bytes/7"), proxy=url)
    assert r.rc == 0 and r.body == payload(7), r
    seen = [e for e in b.log if e["path"] == "/bytes/7"][-1]
    assert not [k for k, _ in seen["headers"] if k.lower().startswith("proxy-auth")], seen
    # wrong password: 01 01 and the connection closed; no credentials at all: no acceptable method
    # (a path no other test of this file asks the shared backend for)
    r = H.curl(b.url("/bytes/8?socks-wrong-password"), proxy="socks5h://alice:nope@127.0.0.1:%d" % p.port)
    assert r.rc != 0 and r.status is None, r
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x02\x01\x05alice\x04nope")
    assert data == b"\x05\x02\x01\x01" and closed, data
    data, closed = H.raw("127.0.0.1", p.port, b"\x05\x01\x00")
    assert data == b"\x05\xff" and closed, data
    assert not [e for e in b.log if e["path"] == "/bytes/8?socks-wrong-password"]


# ---- block_private / block_global on loopback ----------------------------------------

@test
def block_private_never_blocks_loopback():
    b = backend()
    for host in ("127.0.0.1", "::1"):
        p = H.Proxy(["--set", "block_private=true", "--set", "block_global=true"], host=host).start()
        r = H.curl(b.url("/bytes/3"), proxy=p)
        assert r.rc == 0 and r.body == payload(3), (host, r)
        p.stop()


# ---- namespace tests: transparent mode, block_global from real addresses ----------
# (needs unshare from util-linux, ip from iproute2 and nft from nftables: make deps)

NS_ERR = None


def ns_probe():
    """Can we make a user+net namespace with addresses and an nft rule?"""
    try:
        r = subprocess.run(["unshare", "-rn", "sh", "-c",
                            "ip link set lo up && ip addr add 8.8.8.8/32 dev lo && "
                            "nft add table ip mitmlua_probe && "
                            "nft 'add chain ip mitmlua_probe out { type nat hook output priority -100; }' && "
                            "nft add rule ip mitmlua_probe out tcp dport 1 redirect to :2"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "cannot run unshare/ip/nft: %s" % e
    if r.returncode != 0:
        return "unshare -rn + ip addr + nft redirect refused: %s" % r.stderr.decode().strip()[-300:]
    return None


def in_namespace(scenario, *args):
    """Run this file as a helper inside a fresh user+net namespace; returns
    the helper's JSON result."""
    r = subprocess.run(["unshare", "-rn", sys.executable, os.path.abspath(__file__),
                        "--ns", scenario] + [str(a) for a in args],
                       capture_output=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 0, (r.returncode, r.stdout.decode()[-2000:], r.stderr.decode()[-3000:])
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    # the helper's proxies ended as every test's do (SIGTERM, status,
    # no sanitizer report)
    assert not out.get("proxy_problems"), "\n".join(out["proxy_problems"])
    return out


def ns_setup():
    def sh(cmd):
        subprocess.run(cmd, shell=True, check=True, capture_output=True)
    sh("ip link set lo up")
    sh("ip addr add 8.8.8.8/32 dev lo")           # a global address
    sh("ip addr add 10.1.2.3/32 dev lo")          # a private one
    sh("ip addr add 127.0.0.5/8 dev lo || true")  # loopback, for the redirect rule
    return sh


def fetch_from(src, port, target_url):
    """A plain proxy request from source address src; returns the response
    bytes ("" when the proxy closed without answering)."""
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    s.connect(("127.0.0.1" if src.startswith("127.") else src, port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target_url.encode())
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return got.decode("latin-1")


def ns_block(args):
    ns_setup()
    b = Backend().start()
    url = b.url("/bytes/2")
    out = {}
    for name, opts in (("default", []), ("private", ["--set", "block_private=true"]),
                       ("noglobal", ["--set", "block_global=false"])):
        p = H.Proxy(opts, host="0.0.0.0").start()
        out[name] = {src: H.status_of(fetch_from(src, p.port, url).encode("latin-1"))
                     for src in ("127.0.0.1", "10.1.2.3", "8.8.8.8")}
        p.stop()
        out[name + "_log"] = p.stderr
    return out


def ns_transparent(args):
    sh = ns_setup()
    pki_ca, cert, key = args
    b = Backend().start()
    tb = Backend(tls=(cert, key)).start()
    p = H.Proxy(["--mode", "transparent", "--set", "ssl_verify_upstream_trusted_ca=" + pki_ca],
                host="127.0.0.1").start()
    # only connections from 127.0.0.5 are redirected: the proxy's own
    # connections to the backends (from 127.0.0.1) go straight through
    sh("nft add table ip mitmlua_t")
    sh("nft 'add chain ip mitmlua_t out { type nat hook output priority -100; }'")
    for port in (b.port, tb.port):
        sh("nft add rule ip mitmlua_t out ip saddr 127.0.0.5 tcp dport %d redirect to :%d" % (port, p.port))
    out = {}
    r = H.curl("http://127.0.0.1:%d/bytes/123" % b.port, args=["--interface", "127.0.0.5"])
    out["http"] = [r.rc, r.status, r.body == payload(123)]
    r = H.curl("https://localhost:%d/bytes/77" % tb.port, cacert=p.ca(),
               args=["--interface", "127.0.0.5", "--resolve", "localhost:%d:127.0.0.1" % tb.port])
    out["https"] = [r.rc, r.status, r.body == payload(77)]
    # not redirected: straight to the proxy port is refused, not looped
    data, closed = H.raw("127.0.0.1", p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    out["direct"] = [data.decode("latin-1"), closed]
    p.wait_output("/bytes/77")
    p.stop()
    out["stdout"] = p.stdout
    out["stderr"] = p.stderr
    out["backend_clients"] = [e["client"][0] for e in b.log + tb.log]
    return out


NS_ERR = ns_probe() if "--ns" not in sys.argv else None


def ns_test(fn):
    """Register fn; where namespaces do not work it is a skip with the
    reason (run-tests counts and lists it), never a silent absence."""
    if NS_ERR:
        def skipped():
            H.skip(NS_ERR)
        test(skipped, timeout=90, name=fn.__name__)
        return fn
    return test(fn, timeout=90)


@ns_test
def block_global_and_private_by_client_address():
    only_mitmlua()
    out = in_namespace("block")
    # default: block_global on, block_private off; loopback always allowed
    assert out["default"] == {"127.0.0.1": 200, "10.1.2.3": 200, "8.8.8.8": None}, out
    assert "killed by block_global" in out["default_log"], out["default_log"]
    assert out["private"] == {"127.0.0.1": 200, "10.1.2.3": None, "8.8.8.8": None}, out
    assert "killed by block_private" in out["private_log"], out["private_log"]
    assert out["noglobal"] == {"127.0.0.1": 200, "10.1.2.3": 200, "8.8.8.8": 200}, out


@ns_test
def transparent_mode_with_an_nft_redirect():
    only_mitmlua()
    pk = pki()
    out = in_namespace("transparent", pk.ca_cert, pk.cert, pk.key)
    assert out["http"] == [0, 200, True], out
    assert out["https"] == [0, 200, True], out
    assert "GET http://127.0.0.1:" in out["stdout"] and "/bytes/123" in out["stdout"], out["stdout"]
    # the target is the original destination (an IP), as in mitmdump
    assert "GET https://127.0.0.1:" in out["stdout"] and "/bytes/77" in out["stdout"], out["stdout"]
    assert out["direct"] == ["", True], out
    assert "was not redirected" in out["stderr"], out["stderr"]
    # the backends saw the proxy (127.0.0.1), not the redirected client
    assert out["backend_clients"] and set(out["backend_clients"]) == {"127.0.0.1"}, out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--ns":
        fn = {"block": ns_block, "transparent": ns_transparent}[sys.argv[2]]
        res = fn(sys.argv[3:])
        res["proxy_problems"] = H._finish_all(H._SCOPES[0])
        print(json.dumps(res))
        sys.exit(0)
    H.main()
