#!/usr/bin/python3
"""Raw TCP flows (issue 17, mitmdump's rawtcp): inside a tunnel, bytes that
are not HTTP — without TLS or after TLS came off — are relayed as a TCP
flow: the tcp_* hooks see (and may change or drop) each message, the flow
is printed as mitmdump prints it, recorded, filtered with ~tcp and ~b, and
read back.  A server-first protocol (SMTP-like: the client waits for the
greeting) works too.  Real parts: the servers of tcpserver.py, raw sockets
as clients, the proxy on 127.0.0.1."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import harness as H
from harness import test, fixture
from tcpserver import RedisLike, SmtpLike, resp, bulk


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


def only_mitmlua():
    if H.Proxy().is_mitmdump:
        H.skip("mitmlua's own hooks and output")


def tunnel(p, port, host="127.0.0.1"):
    """A socket through p's CONNECT to host:port, after the 200."""
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port, host.encode(), port))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        assert d, head
        head += d
    assert H.status_of(head) == 200, head
    return s


def one_unknown_command(p, port):
    """A TCP flow of one exchange through p: NOPE and the RedisLike
    server's error for it, then the client closes."""
    s = tunnel(p, port)
    s.sendall(resp("NOPE"))
    assert recv_reply(s) == b"-ERR unknown command\r\n"
    s.close()


def recv_reply(s):
    """One RESP reply: a status or error line, or a bulk string."""
    first = recv_line(s)
    return first + recv_line(s) if first.startswith(b"$") else first


def recv_line(s):
    got = b""
    while not got.endswith(b"\n"):
        d = s.recv(1)
        assert d, got
        got += d
    return got


def read_back(dump, *args):
    r = subprocess.run([H.BIN, "-n", "-r", dump] + list(args), capture_output=True, timeout=30)
    assert r.returncode == 0, r
    return r.stdout.decode("utf-8", "replace")


HOOKS = r'''
local log = os.getenv("TCP_LOG")
local function say(s) local f = io.open(log, "a"); f:write(s, "\n"); f:close() end
function tcp_start(flow) say("start " .. flow.type .. " " .. flow.server_conn.address[1]) end
function tcp_message(flow)
  local m = flow.messages[#flow.messages]
  say("message " .. (m.from_client and "client " or "server ") .. #flow.messages .. " " .. (m.content:gsub("\r\n", " ")))
  if m.content:find("drop", 1, true) then m:drop() end
  if m.content:find("mod", 1, true) then m.content = "*2\r\n$4\r\nECHO\r\n$7\r\nchanged\r\n" end
  if m.content:find("^%-ERR") then m.content = "-ERR rewritten\r\n" end
end
function tcp_end(flow) say("end " .. #flow.messages) end
function tcp_error(flow) say("error " .. flow.error.msg) end
function error(flow) say("http error hook") end
'''


def hooks_proxy(extra=()):
    d = H.tmpdir("tcphooks")
    script = os.path.join(d, "hooks.lua")
    H.write(script, HOOKS)
    log = os.path.join(d, "events.log")
    os.environ["TCP_LOG"] = log
    p = H.Proxy(["-s", script] + list(extra)).start()
    return p, log


def events(log, n=None, timeout=10):
    H.wait_for(lambda: os.path.exists(log) and any(l.startswith(("end", "error"))
                                                   for l in H.read(log).splitlines()), timeout=timeout)
    return H.read(log).splitlines() if os.path.exists(log) else []


@test(timeout=60)
def client_first_tunnel_is_a_tcp_flow_hooks_change_and_drop():
    only_mitmlua()
    srv = RedisLike()
    dump = os.path.join(H.tmpdir("rec"), "tcp.mitmlua")
    p, log = hooks_proxy(["-w", dump, "--set", "flow_detail=3"])
    s = tunnel(p, srv.port)
    s.sendall(resp("PING"))
    assert recv_reply(s) == b"+PONG\r\n"
    s.sendall(resp("ECHO", "drop"))       # dropped by the hook: never reaches the server
    time.sleep(0.3)
    s.sendall(resp("ECHO", "mod"))        # changed by the hook on its way
    assert recv_reply(s) == bulk(b"changed")
    s.sendall(resp("NOPE"))               # the server's answer is changed too
    assert recv_reply(s) == b"-ERR rewritten\r\n"
    s.shutdown(socket.SHUT_WR)           # half-close: the server sees EOF, then closes
    assert s.recv(100) == b""
    s.close()
    ev = events(log)
    assert ev[0] == "start tcp 127.0.0.1", ev
    assert ev[1] == "message client 1 *1 $4 PING " and ev[2] == "message server 2 +PONG ", ev
    assert ev[-1].startswith("end "), ev
    assert "http error hook" not in ev, ev
    assert H.wait_for(lambda: len(srv.got) == 1 and b"changed" in srv.got[0], timeout=5), srv.got
    assert b"drop" not in srv.got[0], srv.got
    assert p.stop() == 0, p.describe()
    out = p.stdout
    client = "127.0.0.1:"
    assert ("-> tcp -> 127.0.0.1:%d" % srv.port) in out and ("<- tcp <- 127.0.0.1:%d" % srv.port) in out, out
    assert "+PONG" in out and out.count(client) >= 6, out
    # recorded: read back, printed, filtered
    back = read_back(dump, "--set", "flow_detail=3")
    assert ("-> tcp -> 127.0.0.1:%d" % srv.port) in back and "changed" in back, back
    assert "-> tcp ->" in read_back(dump, "~tcp")
    assert "-> tcp ->" not in read_back(dump, "!~tcp")
    assert "-> tcp ->" in read_back(dump, "~b PONG")
    assert "-> tcp ->" in read_back(dump, "~bs PONG") and "-> tcp ->" not in read_back(dump, "~bq PONG")
    assert "-> tcp ->" not in read_back(dump, "~b nothing-like-this")
    js = [json.loads(l) for l in read_back(dump, "--set", "console_format=jsonl").splitlines()]
    assert len(js) == 1 and js[0]["type"] == "tcp", js


@test(timeout=60)
def read_back_runs_the_tcp_events_in_order():
    only_mitmlua()
    srv = RedisLike()
    dump = os.path.join(H.tmpdir("rec"), "tcp.mitmlua")
    p = H.Proxy(["-q", "-w", dump]).start()
    s = tunnel(p, srv.port)
    for i in range(3):
        s.sendall(resp("ECHO", str(i)))
        assert recv_reply(s) == bulk(b"%d" % i)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(10) == b""   # the server closed too: the flow is over
    s.close()
    assert p.stop() == 0
    d = H.tmpdir("rd")
    script = os.path.join(d, "hooks.lua")
    H.write(script, HOOKS)
    env = dict(os.environ, TCP_LOG=os.path.join(d, "ev.log"))
    r = subprocess.run([H.BIN, "-n", "-q", "-r", dump, "-s", script], capture_output=True, timeout=30, env=env)
    assert r.returncode == 0, r
    ev = H.read(env["TCP_LOG"]).splitlines()
    assert ev == ["start tcp 127.0.0.1",
                  "message client 1 *2 $4 ECHO $1 0 ", "message server 2 $1 0 ",
                  "message client 3 *2 $4 ECHO $1 1 ", "message server 4 $1 1 ",
                  "message client 5 *2 $4 ECHO $1 2 ", "message server 6 $1 2 ",
                  "end 6"], ev


@test(timeout=60)
def server_first_protocol_is_not_stuck():
    """SMTP-like: the client waits for the greeting; the proxy must not
    wait for the client forever."""
    only_mitmlua()
    srv = SmtpLike()
    p = H.Proxy(["--set", "flow_detail=1"]).start()
    s = tunnel(p, srv.port)
    s.settimeout(10)
    assert recv_line(s) == b"220 smtp.test ESMTP ready\r\n"
    s.sendall(b"EHLO client.test\r\n")
    assert recv_line(s) == b"250 EHLO client.test\r\n"
    s.sendall(b"QUIT\r\n")
    assert recv_line(s) == b"221 bye\r\n"
    assert s.recv(10) == b""
    s.close()
    assert p.wait_output("<- tcp <- 127.0.0.1:%d" % srv.port), p.stdout
    assert p.stop() == 0
    lines = [l for l in p.stdout.splitlines() if " tcp " in l]
    assert lines[0].endswith("<- tcp <- 127.0.0.1:%d" % srv.port) and len(lines) == 5, lines


@test(timeout=60)
def tls_inside_the_tunnel_is_taken_off():
    """A client that speaks TLS (no HTTP ALPN) and then a non-HTTP protocol:
    TLS is intercepted both ways, the plaintext is the flow's."""
    only_mitmlua()
    srv = RedisLike(tls=(pki().cert, pki().key))
    p = H.Proxy(["--set", "flow_detail=3", "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    raw = tunnel(p, srv.port, host="localhost")
    ctx = ssl.create_default_context(cafile=p.ca())
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(resp("ECHO", "secret-in-tls"))
    assert recv_reply(s) == bulk(b"secret-in-tls")
    s.close()
    assert p.wait_output("<- tcp <- localhost:%d" % srv.port), p.stdout
    assert p.stop() == 0
    assert p.stdout.count("secret-in-tls") == 2, p.stdout
    # a TLS client that closes without close_notify ended its stream: no error
    assert "Error in TCP connection" not in p.stdout, p.stdout


@test(timeout=60)
def socks5_client_first():
    only_mitmlua()
    srv = RedisLike()
    p = H.Proxy(["--mode", "socks5"]).start()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", srv.port))
    rep = b""
    while len(rep) < 10:
        rep += s.recv(10 - len(rep))
    assert rep[:2] == b"\x05\x00", rep
    s.sendall(resp("PING"))
    assert recv_reply(s) == b"+PONG\r\n"
    s.close()
    assert p.wait_output("-> tcp -> 127.0.0.1:%d" % srv.port), p.stdout
    assert p.stop() == 0


@test(timeout=60)
def refused_server_is_a_tcp_error():
    only_mitmlua()
    port = H.free_port()
    p, log = hooks_proxy()
    s = tunnel(p, port)
    s.sendall(b"\x00\x01binary")
    s.settimeout(10)
    assert s.recv(10) == b""       # the client is closed
    s.close()
    ev = events(log)
    assert ev[0] == "start tcp 127.0.0.1" and ev[-1].startswith("error ") and "refused" in ev[-1], ev
    assert p.wait_output("Error in TCP connection to 127.0.0.1:%d" % port), p.stdout
    assert p.stop() == 0


@test(timeout=90)
def a_server_that_does_not_read_holds_the_client_back():
    """The relay stops reading a side whose peer's queue is full (1 MiB in
    the proxy): a client sending to a server that reads nothing is held
    back by the kernel's buffers plus that, not by memory; once the server
    reads, every byte arrives in order."""
    only_mitmlua()
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    go, got = threading.Event(), bytearray()

    def server():
        c, _ = lsock.accept()
        with c:
            go.wait(60)
            c.settimeout(10)
            while True:
                d = c.recv(1 << 20)
                if not d:
                    return
                got.extend(d)
    t = threading.Thread(target=server, daemon=True)
    t.start()
    p = H.Proxy(["-q", "--set", "tcp_timeout=0"]).start()
    s = tunnel(p, lsock.getsockname()[1])
    s.settimeout(2)
    block = bytes(range(256)) * 256          # 64 KiB, starting with \x00: not HTTP
    limit = 256 << 20                         # a relay that buffered all would take it
    sent = 0
    try:
        while sent < limit:
            sent += s.send(block)
    except socket.timeout:
        pass
    print("# the client got %d bytes out before it was held back" % sent)
    assert 1 << 20 < sent < 64 << 20, sent
    go.set()
    s.shutdown(socket.SHUT_WR)
    t.join(30)
    assert len(got) == sent, (len(got), sent)
    assert bytes(got[:len(block)]) == block and got == block * (sent // len(block)) + block[:sent % len(block)]
    s.close()
    assert p.stop() == 0


@test(timeout=60)
def tcp_timeout_closes_a_quiet_flow():
    only_mitmlua()
    srv = RedisLike()
    p, log = hooks_proxy(["--set", "tcp_timeout=1"])
    s = tunnel(p, srv.port)
    s.sendall(resp("PING"))
    assert recv_reply(s) == b"+PONG\r\n"
    s.settimeout(10)
    t0 = time.monotonic()
    assert s.recv(10) == b""         # closed by the proxy, about a second later
    assert 0.8 < time.monotonic() - t0 < 6, time.monotonic() - t0
    s.close()
    ev = events(log)
    assert ev[-1] == "end 2", ev      # an idle end is an end, not an error
    assert p.stop() == 0
    assert "tcp_timeout" in p.stderr, p.stderr


@test(timeout=60)
def rawtcp_off_refuses_what_is_not_http():
    only_mitmlua()
    srv = RedisLike()
    dump = os.path.join(H.tmpdir("rec"), "off.mitmlua")
    p = H.Proxy(["--set", "rawtcp=false", "-w", dump]).start()
    s = tunnel(p, srv.port)
    s.sendall(resp("PING"))
    s.settimeout(10)
    got = s.recv(4096)
    assert H.status_of(got) == 400, got
    s.close()
    assert p.stop() == 0
    assert srv.got == [], srv.got
    assert "-> tcp ->" not in read_back(dump)


@test(timeout=60)
def http_in_a_tunnel_stays_http():
    """The first bytes are letters: an HTTP request, intercepted as ever."""
    only_mitmlua()
    from backend import Backend
    b = Backend().start()
    p = H.Proxy([]).start()
    r = H.curl(b.url("/echo"), proxy=p, args=["--proxytunnel"])
    assert r.rc == 0 and r.status == 200, r
    assert p.wait_output("GET http://127.0.0.1:%d/echo" % b.port), p.stdout
    assert p.stop() == 0
    assert " tcp " not in p.stdout, p.stdout


@test(timeout=90)
def mitmproxy_files_carry_tcp_flows_both_ways():
    """mitmlua writes a TCP flow in mitmproxy's format that mitmdump 8.1.1
    prints as its own; and reads mitmdump's TCP flows."""
    only_mitmlua()
    md = H.need_mitmdump()
    srv = RedisLike()
    d = H.tmpdir("mitm")
    ours = os.path.join(d, "ours.mitm")
    p = H.Proxy(["-q", "-w", ours]).start()
    one_unknown_command(p, srv.port)
    time.sleep(0.3)
    assert p.stop() == 0
    r = subprocess.run([md, "-n", "-r", ours, "--set", "flow_detail=3"], capture_output=True, timeout=60)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0 and ("-> tcp -> 127.0.0.1:%d" % srv.port) in out and "ERR unknown command" in out, r
    # mitmdump records one; mitmlua reads it back
    theirs = os.path.join(d, "theirs.mitm")
    m = H.Proxy(["-q", "-w", theirs, "--set", "connection_strategy=lazy"], binary=md, label="mitmdump").start()
    one_unknown_command(m, srv.port)
    time.sleep(0.5)
    m.stop()
    back = read_back(theirs, "--set", "flow_detail=3", "~tcp")
    assert ("<- tcp <- 127.0.0.1:%d" % srv.port) in back and "ERR unknown command" in back, back


@test(timeout=60)
def har_says_how_many_tcp_flows_it_left_out():
    only_mitmlua()
    srv = RedisLike()
    har = os.path.join(H.tmpdir("har"), "out.har")
    p = H.Proxy(["--set", "hardump=" + har]).start()
    one_unknown_command(p, srv.port)
    time.sleep(0.3)
    assert p.stop() == 0
    assert json.loads(H.read(har))["log"]["entries"] == []
    assert "1 TCP flow not written" in p.stderr, p.stderr


if __name__ == "__main__":
    H.main()
