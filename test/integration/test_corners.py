#!/usr/bin/python3
"""Paths no other test reached, one small test each (issue 22): the retry
of a request sent on a stale keep-alive server connection (upstream.c),
CONNECT over HTTP/2 and an HTTP/2 request without :authority (client_h2.c),
WebSocket and CONNECT flows that client replay refuses (creplay.c),
showhost, max_header_size, and the warning about a CA key other users can
read, which must hold when the proxy runs as root (no access() shortcut)."""
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


def only_mitmlua():
    if H.IS_MITMDUMP:
        H.skip("mitmlua's messages and options")


# ---- HTTP/1: a pooled server connection that went stale ---------------------

class StaleServer:
    """A raw HTTP/1.1 server that answers the first request of each
    connection (keep-alive, Content-Length) and closes the connection
    without a byte when a second request arrives on it: to a proxy that
    reuses the connection it looks stale."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.requests = []          # (connection number, request line)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        c.settimeout(10)
        buf, answered = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    b = c.recv(65536)
                    if not b:
                        return
                    buf += b
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests.append((n, head.split(b"\r\n")[0].decode()))
                if answered:
                    return          # stale: close without answering
                body = b"answer %d" % n
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                answered += 1
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.sock.close()


@test
def stale_keepalive_connection_is_retried_once():
    s = StaleServer()
    try:
        p = H.Proxy([]).start()
        c = H.Conn("127.0.0.1", p.port)
        for path in ("/first", "/second"):
            c.send(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                   % (s.port, path.encode(), s.port))
            status, _, body = c.response()
            assert status == 200, (path, status, body, s.requests)
            time.sleep(0.2)
        c.close()
        # the second request went out on the pooled connection, met the
        # close, and was sent again on a new one, where it was answered
        assert body == b"answer 2", (body, s.requests)
        assert s.requests == [(1, "GET /first HTTP/1.1"), (1, "GET /second HTTP/1.1"),
                              (2, "GET /second HTTP/1.1")], s.requests
    finally:
        s.stop()


# ---- HTTP/2 from the client: CONNECT, and no :authority ----------------------

def h2c_exchange(port, headers):
    """One request over h2c prior knowledge, sent as given (the h2 package's
    own header checks off): (status, body, RST_STREAM code or None)."""
    import h2.config
    import h2.connection
    import h2.events
    cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                    validate_outbound_headers=False,
                                    normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(cfg)
    conn.initiate_connection()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=True)
    s.sendall(conn.data_to_send())
    status, body, done, reset = None, [], False, None
    end = time.monotonic() + 10
    while not done and time.monotonic() < end:
        data = s.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body.append(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                done, reset = True, ev.error_code
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        s.sendall(conn.data_to_send())
    s.close()
    return status, b"".join(body), reset


@test
def connect_over_http2_is_refused_with_501():
    only_mitmlua()
    b = backend()
    p = H.Proxy([]).start()
    status, body, _ = h2c_exchange(p.port, [(":method", "CONNECT"),
                                            (":authority", "127.0.0.1:%d" % b.port)])
    assert status == 501, (status, body)
    assert p.wait_output("CONNECT over HTTP/2 is not supported", stream="both"), (p.stdout, p.stderr)
    assert [e["path"] for e in b.log] == [], b.log   # nothing went on to the server
    # the connection's other streams are unaffected: a plain GET still works
    status, body, _ = h2c_exchange(p.port, [(":method", "GET"), (":scheme", "http"),
                                            (":authority", "127.0.0.1:%d" % b.port),
                                            (":path", "/bytes/7")])
    assert status == 200 and len(body) == 7, (status, body)


@test
def http2_request_without_authority_is_refused():
    only_mitmlua()
    b = backend()
    n = len(b.log)
    p = H.Proxy([]).start()
    # neither :authority nor Host: nghttp2 resets the stream (RFC 9113
    # 8.3.1) before client_h2.c sees it, so its own "request without
    # :authority" 400 is a second line of defence no client reaches
    status, body, reset = h2c_exchange(p.port, [(":method", "GET"), (":scheme", "http"),
                                                (":path", "/bytes/7")])
    assert status is None and reset == 1, (status, body, reset)  # PROTOCOL_ERROR
    # an authority with no host in it: 400 from the request checks
    status, body, _ = h2c_exchange(p.port, [(":method", "GET"), (":scheme", "http"),
                                            (":authority", ":80"), (":path", "/bytes/7")])
    assert status == 400 and b"authority" in body, (status, body)
    assert len(b.log) == n, b.log       # nothing went on to the server
    # and the proxy serves the next client as before
    status, body, _ = h2c_exchange(p.port, [(":method", "GET"), (":scheme", "http"),
                                            (":authority", "127.0.0.1:%d" % b.port),
                                            (":path", "/bytes/7")])
    assert status == 200 and len(body) == 7, (status, body)


# ---- client replay refuses what it cannot replay -----------------------------

@test(timeout=60)
def client_replay_skips_websocket_and_connect_flows():
    only_mitmlua()
    b = Backend().start()
    # a mitmproxy flow file (mitmlua reads those too) made with mitmproxy's
    # own test helpers: a WebSocket flow, a CONNECT flow, and one plain GET
    # to our backend that must still be replayed
    d = H.tmpdir("creplay")
    path = os.path.join(d, "flows")
    gen = """
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from mitmproxy import io
from mitmproxy.test import tflow
ws = tflow.twebsocketflow()
con = tflow.tflow()
con.request.method = "CONNECT"
con.request.host, con.request.port, con.request.path = "127.0.0.1", %(port)d, ""
con.response = None
get = tflow.tflow(resp=True)
get.request.scheme, get.request.host, get.request.port = "http", "127.0.0.1", %(port)d
get.request.path = "/bytes/5"
get.request.headers["host"] = "127.0.0.1:%(port)d"
with open(sys.argv[1], "wb") as fh:
    w = io.FlowWriter(fh)
    for f in (ws, con, get):
        w.add(f)
print(ws.id, con.id, get.id)
""" % {"port": b.port}
    r = subprocess.run(["/usr/bin/python3", "-c", gen, path], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    ws_id, con_id, get_id = r.stdout.decode().split()
    r = subprocess.run([H.BIN, "-n", "-C", path, "--confdir", os.path.join(d, "conf")],
                       capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 0, (r.returncode, err)
    assert "skipping flow %s: cannot replay WebSocket flows" % ws_id in err, err
    assert "skipping flow %s: cannot replay a CONNECT request" % con_id in err, err
    assert [e["path"] for e in b.log] == ["/bytes/5"], b.log
    assert H.SANITIZER_RE.search(err) is None, err
    b.stop()


# ---- showhost -------------------------------------------------------------------

@test
def showhost_prints_the_host_header():
    only_mitmlua()
    b = backend()
    url = "http://127.0.0.1:%d/bytes/3" % b.port
    shown = "http://shown.test:%d/bytes/3" % b.port
    for flag, want, other in ((["--set", "showhost=true"], shown, url), ([], url, shown)):
        p = H.Proxy(flag).start()
        # inside a CONNECT tunnel (origin-form) the Host header is the
        # client's own; an absolute-form request's Host is the target's
        r = H.curl(url, proxy=p, headers=["Host: shown.test:%d" % b.port], args=["--proxytunnel"])
        assert r.status == 200 and len(r.body) == 3, r
        assert p.wait_output("GET " + want), (flag, p.stdout)
        assert other not in p.stdout, (flag, p.stdout)


# ---- max_header_size -----------------------------------------------------------

class BigHeadServer:
    """Answers every request with a response head of `size` bytes."""

    def __init__(self, size):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.pad = b"X-Big: " + b"b" * size + b"\r\n"
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                buf = b""
                try:
                    while b"\r\n\r\n" not in buf:
                        b = c.recv(65536)
                        if not b:
                            break
                        buf += b
                    self.requests += 1
                    c.sendall(b"HTTP/1.1 200 OK\r\n" + self.pad +
                              b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
                except OSError:
                    pass

    def stop(self):
        self.sock.close()


@test
def max_header_size_limits_both_directions():
    only_mitmlua()
    b = backend()
    p = H.Proxy(["--set", "max_header_size=2k"]).start()
    ok = H.curl(b.url("/bytes/4"), proxy=p, headers=["X-Pad: " + "a" * 1000])
    assert ok.status == 200 and len(ok.body) == 4, ok
    big = H.curl(b.url("/bytes/4"), proxy=p, headers=["X-Pad: " + "a" * 3000])
    assert big.status == 431, big
    # a response head over the limit: 502, not passed on
    big = BigHeadServer(3000)
    small = BigHeadServer(500)
    try:
        r = H.curl("http://127.0.0.1:%d/" % big.port, proxy=p)
        assert r.status == 502 and big.requests == 1, (r, big.requests)
        assert H.header(r.headers, "X-Big") is None, r
        r = H.curl("http://127.0.0.1:%d/" % small.port, proxy=p)
        assert r.status == 200 and H.header(r.headers, "X-Big") == "b" * 500, r
    finally:
        big.stop()
        small.stop()


# ---- the CA key's permissions --------------------------------------------------

@test
def ca_key_readable_by_others_is_refused_even_as_root():
    only_mitmlua()
    # as root every file is readable anyway: the check must look at the
    # mode bits (stat), not ask access() whether we may read the key
    p = H.Proxy([]).start()
    assert p.stop() == 0, p.stderr
    key = p.ca("-ca.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600, oct(os.stat(key).st_mode)
    os.chmod(key, 0o644)
    q = H.Proxy([], confdir=p.confdir).spawn()
    assert q.wait(10) == 1, q.describe()
    assert key in q.stderr and "644" in q.stderr, q.stderr
    os.chmod(key, 0o600)
    if os.geteuid() == 0:
        print("# ran as root")


if __name__ == "__main__":
    H.main()
