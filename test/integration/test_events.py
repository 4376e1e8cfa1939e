#!/usr/bin/python3
"""Connection and TLS events, against mitmdump: the same scenarios run
through mitmdump 8.1.1 with a Python addon that logs every event and through
mitmlua with a Lua module that does the same, and the event sequences match.

mitmdump runs with upstream_cert=false and connection_strategy=lazy, the
way mitmlua contacts servers (only once a request needs one; see
man/mitmlua.1, EVENTS).  The two disconnect events at the end of a
connection come in whichever order the sockets close: they are compared as a
set.  A raw TCP flow (rawtcp) is compared with its tcp_* events; a
connection passed through by tls_clienthello is compared up to the hook
(mitmdump connects to its server there, mitmlua after it).

Also: what a server_connect hook changes (the address, refusing) and what
tls_clienthello sees (SNI, ALPN) and decides (ignore_connection)."""
import os
import socket
import subprocess
import time

import harness as H
from harness import test, fixture
from backend import Backend
from tcpserver import RedisLike, ThreadedServer, resp

EVENTS = ["client_connected", "client_disconnected", "server_connect", "server_connected",
          "server_disconnected", "tls_clienthello", "tls_start_client", "tls_start_server",
          "tls_established_client", "tls_established_server", "tls_failed_client",
          "tls_failed_server", "http_connect", "requestheaders", "request", "responseheaders",
          "response", "error", "tcp_start", "tcp_message", "tcp_end", "tcp_error",
          "websocket_start", "websocket_message", "websocket_end"]
DISCONNECTS = {"client_disconnected", "server_disconnected"}

PY_ADDON = '''
import os
IGNORE = os.environ.get("EV_IGNORE_SNI", "")
class Log:
    pass
def mk(name):
    def f(self, data):
        with open(os.environ["EV_LOG"], "a") as fp:
            fp.write(name + "\\n")
        if name == "tls_clienthello" and IGNORE and data.client_hello.sni == IGNORE:
            data.ignore_connection = True
    return f
for n in %r:
    setattr(Log, n, mk(n))
addons = [Log()]
''' % EVENTS

LUA_MODULE = '''
local log = os.getenv("EV_LOG")
local ignore = os.getenv("EV_IGNORE_SNI") or ""
local hooks = {}
for _, name in ipairs(%s) do
  hooks[name] = function(data)
    local f = io.open(log, "a"); f:write(name, "\\n"); f:close()
    if name == "tls_clienthello" and ignore ~= "" and data.client_hello.sni == ignore then
      data.ignore_connection = true
    end
  end
end
return hooks
''' % ("{" + ", ".join('"%s"' % e for e in EVENTS) + "}")


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def backend():
    return Backend().start()


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


class Side:
    """One proxy (mitmdump or mitmlua) with its event log."""

    def __init__(self, mitmdump):
        d = H.tmpdir("events")
        self.log = os.path.join(d, "events.log")
        script = os.path.join(d, "log.py" if mitmdump else "log.lua")
        H.write(script, PY_ADDON if mitmdump else LUA_MODULE)
        env = {"EV_LOG": self.log, "EV_IGNORE_SNI": "ignored.test"}
        saved = dict(os.environ)
        os.environ.update(env)
        args = ["-q", "-s", script, "--set", "ssl_insecure=true"]
        if mitmdump:
            args += ["--set", "upstream_cert=false", "--set", "connection_strategy=lazy"]
        try:
            self.proxy = H.Proxy(args, binary=H.need_mitmdump() if mitmdump else None,
                                 label="mitmdump" if mitmdump else "mitmlua").start()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def events(self, action):
        """Run action(proxy), wait until the log is quiet, return the events."""
        if os.path.exists(self.log):
            os.unlink(self.log)
        action(self.proxy)
        last, since = None, time.monotonic()
        while time.monotonic() - since < 0.6:
            now = H.read(self.log) if os.path.exists(self.log) else ""
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.05)
        return [l for l in (last or "").splitlines() if l]


def normal(events, drop=()):
    """The events before the trailing disconnects, and the set of those."""
    seq = [e for e in events if e not in drop]
    tail = []
    while seq and seq[-1] in DISCONNECTS:
        tail.append(seq.pop())
    return seq, sorted(tail)


def compare(name, action, drop=()):
    md, ml = sides()
    a = md.events(action)
    b = ml.events(action)
    assert normal(a, drop) == normal(b, drop), "%s:\n mitmdump %s\n mitmlua  %s" % (name, a, b)
    return b


def sides():
    """A mitmdump and a mitmlua for one test (the harness stops and checks
    a test's proxies at its end)."""
    return Side(True), Side(False)


def curl(url, **kw):
    return lambda p: H.curl(url, proxy=p, **kw)


@test(timeout=120)
def plain_http():
    seq = compare("plain", curl(backend().url("/echo")))
    assert seq[:3] == ["client_connected", "requestheaders", "request"], seq


@test(timeout=60)
def refused_server():
    port = H.free_port()
    seq = compare("refused", curl("http://127.0.0.1:%d/" % port))
    assert "error" in seq and "server_connected" not in seq, seq


@test(timeout=60)
def connect_and_tls():
    def go(p):
        r = H.curl(tls_backend().url("/echo", scheme="https"), proxy=p, cacert=p.ca())
        assert r.status == 200, r
    seq = compare("connect+tls", go)
    assert "tls_established_client" in seq and "tls_established_server" in seq, seq


@test(timeout=60)
def client_rejects_the_certificate():
    def go(p):
        r = H.curl(tls_backend().url("/echo", scheme="https"), proxy=p)
        assert r.rc != 0, r
    seq = compare("client rejects", go)
    assert "tls_failed_client" in seq and "request" not in seq, seq


@test(timeout=60)
def server_tls_fails():
    # a plain HTTP server where TLS is expected: the server side fails
    def go(p):
        H.curl(backend().url("/echo", scheme="https"), proxy=p, cacert=p.ca())
    seq = compare("server tls fails", go)
    assert "tls_failed_server" in seq and "error" in seq, seq


@test(timeout=60)
def raw_tcp_in_a_tunnel():
    srv = RedisLike()

    def go(p):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (srv.port, srv.port))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        s.sendall(resp("PING"))
        assert s.recv(100) == b"+PONG\r\n"
        s.close()   # (mitmdump 8.1.1 does not pass a half-close on)
    seq = compare("raw tcp", go)
    assert seq[:5] == ["client_connected", "http_connect", "tcp_start", "server_connect",
                       "server_connected"], seq
    assert seq.count("tcp_message") == 2 and "tcp_end" in seq, seq


class WsEcho(ThreadedServer):
    """A WebSocket server in a few lines: the handshake, then each frame
    echoed (unmasked), a close answered with a close."""

    def _one(self, c):
        import base64
        import hashlib
        with c:
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += c.recv(4096)
            key = [l.split(b":", 1)[1].strip() for l in buf.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key:")][0]
            acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            while True:
                head = c.recv(2)
                if len(head) < 2:
                    return
                n = head[1] & 0x7f
                mask = c.recv(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(c.recv(n)))
                c.sendall(bytes([head[0], n]) + data)
                if head[0] & 0x0f == 8:
                    return


def ws_frame(op, payload):
    mask = b"\x01\x02\x03\x04"
    return bytes([0x80 | op, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@test(timeout=60)
def websocket_through_the_proxy():
    srv = WsEcho()

    def go(p):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        s.sendall(b"GET http://127.0.0.1:%d/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n" % (srv.port, srv.port))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        s.sendall(ws_frame(1, b"hello"))
        assert s.recv(100) == b"\x81\x05hello"
        s.sendall(ws_frame(8, b"\x03\xe8"))
        assert s.recv(100)[:1] == b"\x88"
        s.close()
    seq = compare("websocket", go)
    assert "websocket_start" in seq and seq.count("websocket_message") == 2, seq
    # the server connection ends with the WebSocket, not at its 101
    assert seq.index("websocket_end") < seq.index("server_disconnected"), seq


@test(timeout=60)
def clienthello_ignore_connection_passes_through():
    # the backend's own certificate reaches the client: not intercepted
    url = "https://ignored.test:%d/echo" % tls_backend().port

    def go(p):
        r = H.curl(url, proxy=p, cacert=pki().ca_cert,
                   args=["--connect-to", "ignored.test:%d:127.0.0.1:%d" % (tls_backend().port,
                                                                          tls_backend().port)])
        assert r.status == 200, r
    # mitmdump connects to the server at tls_clienthello (a passthrough
    # needs its server), which mitmlua does after the hook: compared up to it
    md, ml = sides()
    a, b = md.events(go), ml.events(go)
    upto = lambda s: s[:s.index("tls_clienthello") + 1] if "tls_clienthello" in s else s
    assert upto([e for e in a if not e.startswith("server_")]) == upto(b), (a, b)
    assert "tls_start_client" not in b and "request" not in b, b


@test(timeout=60)
def server_connect_may_redirect_or_refuse():
    s = os.path.join(H.tmpdir("sc"), "sc.lua")
    H.write(s, '''
return {
  server_connect = function(data)
    if data.server.address[2] == 1 then
      data.server.address = {"127.0.0.1", %d}       -- port 1: send it to the backend
    elseif data.server.address[2] == 2 then
      data.server.error = "not this one"
    end
  end,
  tls_clienthello = function(data)
    local h = data.client_hello
    mitm.log.info("hello sni=" .. tostring(h.sni) .. " alpn=" .. table.concat(h.alpn_protocols, ","))
  end,
}
''' % backend().port)
    p = H.Proxy(["-s", s]).start()
    before = len(backend().log)
    r = H.curl("http://127.0.0.1:1/echo?moved", proxy=p)
    assert r.status == 200 and len(backend().log) == before + 1, r
    r = H.curl("http://127.0.0.1:2/echo", proxy=p)
    assert r.status == 502 and b"not this one" in r.body, r
    r = H.curl(tls_backend().url("/echo", scheme="https"), proxy=p, cacert=p.ca(), http11=False,
               args=["--http2"])
    # curl sends no SNI for an IP address
    assert p.wait_output("hello sni=nil alpn=h2,http/1.1", stream="stderr"), p.stderr
    assert p.stop() == 0


if __name__ == "__main__":
    H.main()
