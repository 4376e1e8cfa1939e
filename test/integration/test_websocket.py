#!/usr/bin/python3
"""WebSocket through the proxy: Python's websockets (client and an echo
server started here) over CONNECT (ws and wss with the test CA) and a raw
absolute-form handshake.  Text, binary, fragmented and large messages,
ping/pong, close codes both ways, a hook that rewrites and one that drops
a message, protocol errors answered with a close frame, permessage-deflate
negotiated away, and the dump recording the messages (-w, then -r with
~websocket and ~b)."""
import asyncio
import base64
import os
import socket
import ssl
import struct
import subprocess
import threading

import harness as H
from harness import test, fixture

import websockets
import websockets.server
import websockets.client


# ---- the echo server -------------------------------------------------------

async def _echo(ws, path):
    try:
        await _echo_loop(ws)
    except websockets.exceptions.ConnectionClosed:
        pass        # the tests that break the protocol on purpose end here


async def _echo_loop(ws):
    async for msg in ws:
        if msg == "server-fragments":
            await ws.send(["part1-", "part2-", "part3"])
        elif isinstance(msg, str) and msg.startswith("close:"):
            code = int(msg.split(":")[1])
            await ws.close(code, "server says bye")
            return
        elif msg == "extensions?":
            await ws.send(ws.request_headers.get("Sec-WebSocket-Extensions", "none"))
        else:
            await ws.send(msg)


class EchoServer:
    def __init__(self, tls=None):
        self.loop = asyncio.new_event_loop()
        self.port = H.free_port()
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            srv = websockets.server.serve(_echo, "127.0.0.1", self.port, ssl=ctx, max_size=None)
            self.loop.run_until_complete(srv)
            ready.set()
            self.loop.run_forever()
        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10), "echo server did not start"


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def echo():
    return EchoServer()


@fixture
def tls_echo():
    return EchoServer(tls=(pki().cert, pki().key))


def start_proxy(*args):
    return H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert] + list(args)).start()


def tunnel(proxy, port):
    """A socket to the proxy, CONNECTed to 127.0.0.1:port."""
    s = socket.create_connection((proxy.host, proxy.port), timeout=10)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "proxy closed the CONNECT"
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 200"), buf
    s.settimeout(None)
    return s


def run(coro):
    return asyncio.new_event_loop().run_until_complete(asyncio.wait_for(coro, 20))


def connect(proxy, server, tls=False, **kw):
    s = tunnel(proxy, server.port)
    if tls:
        ctx = ssl.create_default_context(cafile=proxy.ca())
        return websockets.client.connect("wss://localhost:%d/chat" % server.port, sock=s, ssl=ctx,
                                         server_hostname="localhost", max_size=None, **kw)
    return websockets.client.connect("ws://127.0.0.1:%d/chat" % server.port, sock=s, max_size=None, **kw)


def read_dump(path, *filt):
    return subprocess.run([H.BIN, "-n", "-r", path, "--set", "flow_detail=3"] + list(filt),
                          capture_output=True, timeout=30)


BIG = os.urandom(3 * 1024 * 1024)


# ---- the tests ---------------------------------------------------------------

@test
def messages_through_connect_and_dump():
    d = H.tmpdir("ws")
    path = os.path.join(d, "flows")
    p = start_proxy("-w", path)

    async def go():
        async with connect(p, echo()) as ws:
            await ws.send("hello text")
            assert await ws.recv() == "hello text"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            await ws.send(["frag-a ", "frag-b ", "frag-c"])       # fragmented by the client
            assert await ws.recv() == "frag-a frag-b frag-c"
            await ws.send("server-fragments")                      # fragmented by the server
            assert await ws.recv() == "part1-part2-part3"
            await ws.send(BIG)
            assert await ws.recv() == BIG
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)                       # the pong came back through
            await ws.send("extensions?")
            return await ws.recv()
    ext = run(go())
    # the client offered permessage-deflate; the server must not have seen it
    if not H.IS_MITMDUMP:
        assert ext == "none", ext
    assert p.wait_output("WebSocket connection closed by client: 1000", timeout=10), p.stdout
    out = p.stdout
    assert "<< 101 Switching Protocols" in out, out
    assert "-> WebSocket text message -> 127.0.0.1:%d/chat" % echo().port in out, out
    assert "<- WebSocket binary message <- 127.0.0.1:%d/chat" % echo().port in out, out
    assert out.count("WebSocket text message") == 8, out   # 4 text each way
    assert p.stop() == 0
    r = read_dump(path, "~websocket & ~b frag-b")
    assert r.returncode == 0, r
    o = r.stdout.decode("utf-8", "replace")
    assert "101" in o and "frag-a frag-b frag-c" in o and "part1-part2-part3" in o, o
    assert "WebSocket connection closed by client: 1000" in o, o
    r = read_dump(path, "~websocket & ~b nothing-like-this")
    assert r.returncode == 0 and b"WebSocket" not in r.stdout, r


@test
def websocket_false_relays_bytes():
    """mitmproxy's websocket=false: the 101 is a flow; what follows is
    relayed untouched (permessage-deflate reaches the server), no
    messages are read."""
    p = start_proxy("--set", "websocket=false")

    async def go():
        async with connect(p, echo()) as ws:
            await ws.send("hello text")
            assert await ws.recv() == "hello text"
            await ws.send("extensions?")
            return await ws.recv()
    ext = run(go())
    assert "permessage-deflate" in ext, ext
    assert H.wait_for(lambda: "<< 101 Switching Protocols" in p.stdout), p.stdout
    assert p.stop() == 0
    assert "WebSocket" not in p.stdout, p.stdout


@test
def wss_hook_rewrites_and_drops():
    lua = """
function websocket_message(flow)
  local m = flow.websocket.messages[#flow.websocket.messages]
  if m.from_client and m.content == "drop me" then m:drop() end
  if m.from_client and m.content == "rewrite me" then m.content = "rewritten by lua" end
  if not m.from_client and m.is_text then m.content = m.content .. " (" .. #flow.websocket.messages .. ")" end
end
"""
    py = """
def websocket_message(flow):
    m = flow.websocket.messages[-1]
    if m.from_client and m.content == b"drop me": m.drop()
    if m.from_client and m.content == b"rewrite me": m.content = b"rewritten by lua"
    if not m.from_client and m.is_text: m.content = m.content + b" (%d)" % len(flow.websocket.messages)
"""
    p = start_proxy("-s", H.script("ws", lua, py))

    async def go():
        async with connect(p, tls_echo(), tls=True) as ws:
            await ws.send("drop me")
            await ws.send("rewrite me")
            a = await ws.recv()
            await ws.send(b"bin")
            b = await ws.recv()
            return a, b
    a, b = run(go())
    # message 1 dropped (still recorded), 2 rewritten, its echo is message 3
    assert a == "rewritten by lua (3)", a
    assert b == b"bin", b


@test
def hook_kills_the_connection():
    lua = """
function websocket_message(flow)
  local m = flow.websocket.messages[#flow.websocket.messages]
  if m.content == "kill" then flow:kill() end
end
"""
    py = """
def websocket_message(flow):
    if flow.websocket.messages[-1].content == b"kill": flow.kill()
"""
    p = start_proxy("-s", H.script("wskill", lua, py))

    async def go():
        async with connect(p, echo()) as ws:
            await ws.send("fine")
            assert await ws.recv() == "fine"
            await ws.send("kill")
            try:
                await ws.recv()
            except websockets.exceptions.ConnectionClosed:
                return "closed"
            return "not closed"
    assert run(go()) == "closed"


@test
def example_script():
    H.skip_if_mitmdump("a Lua example")
    ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "websocket.lua")
    p = start_proxy("-s", ex)

    async def go():
        async with connect(p, echo()) as ws:
            await ws.send("heartbeat")
            await ws.send("my secret")
            return await ws.recv()
    assert run(go()) == "my ******"
    assert p.wait_output("/chat: 3 messages, closed by the client with 1000", timeout=10,
                         stream="stderr"), p.stderr


@test
def close_codes_both_ways():
    p = start_proxy()

    async def server_closes():
        async with connect(p, echo()) as ws:
            await ws.send("close:4001")
            try:
                await ws.recv()
            except websockets.exceptions.ConnectionClosed as e:
                return e.code, e.reason
            raise AssertionError("no close")
    assert run(server_closes()) == (4001, "server says bye")
    assert p.wait_output("UNKNOWN_ERROR=4001 (reason: server says bye)", timeout=10), p.stdout

    async def client_closes():
        async with connect(p, echo()) as ws:
            await ws.send("x")
            await ws.recv()
            await ws.close(1001, "client going away")
            return ws.close_code
    assert run(client_closes()) == 1001
    assert p.wait_output("WebSocket connection closed by client: 1001 client going away", timeout=10), p.stdout


def raw_handshake(p, port):
    """ws:// through the proxy with an absolute-form request on a raw socket."""
    s = socket.create_connection((p.host, p.port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET http://127.0.0.1:%d/raw HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
              % (port, port, key))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 101"), buf
    return s, buf.split(b"\r\n\r\n", 1)[1]


def frame(op, payload, mask=True, fin=True, rsv=0):
    b = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    n = len(payload)
    m = 0x80 if mask else 0
    b += bytes([m | n]) if n < 126 else bytes([m | 126]) + struct.pack(">H", n)
    if mask:
        k = os.urandom(4)
        payload = bytes(c ^ k[i % 4] for i, c in enumerate(payload))
        b += k
    return b + payload


def read_frame(s, buf):
    def need(n):
        nonlocal buf
        while len(buf) < n:
            c = s.recv(65536)
            assert c, "closed with %r" % buf
            buf += c
    need(2)
    op, n = buf[0] & 0x0F, buf[1] & 0x7F
    assert not buf[1] & 0x80, "server->client frame masked"
    h = 2
    if n == 126:
        need(4)
        n, h = struct.unpack(">H", buf[2:4])[0], 4
    need(h + n)
    return op, buf[h:h + n], buf[h + n:]


@test
def absolute_form_and_protocol_error():
    p = start_proxy()
    s, rest = raw_handshake(p, echo().port)
    s.sendall(frame(1, b"raw hello"))
    op, data, rest = read_frame(s, rest)
    assert (op, data) == (1, b"raw hello"), (op, data)
    s.sendall(frame(9, b"ping!"))                   # answered by the server
    op, data, rest = read_frame(s, rest)
    assert (op, data) == (10, b"ping!"), (op, data)
    s.sendall(frame(1, b"unmasked", mask=False))    # a client must mask
    op, data, rest = read_frame(s, rest)
    assert op == 8 and struct.unpack(">H", data[:2])[0] == 1002, (op, data)
    s.close()
    assert p.wait_output("PROTOCOL_ERROR (reason: client frame not masked)", timeout=10), p.stdout

    s, rest = raw_handshake(p, echo().port)
    s.sendall(frame(1, b"\xed\xa0\x80"))            # a surrogate: not UTF-8
    op, data, rest = read_frame(s, rest)
    assert op == 8 and struct.unpack(">H", data[:2])[0] == 1007, (op, data)
    s.close()


@test
def message_over_the_size_limit():
    p = start_proxy("--set", "body_size_limit=1k")
    s, rest = raw_handshake(p, echo().port)
    s.sendall(frame(2, b"x" * 1000))
    op, data, rest = read_frame(s, rest)
    assert (op, len(data)) == (2, 1000), op
    s.sendall(frame(2, b"y" * 600, fin=False) + frame(0, b"y" * 600))
    op, data, rest = read_frame(s, rest)
    assert op == 8 and struct.unpack(">H", data[:2])[0] == 1009, (op, data)
    s.close()


@test(timeout=90)
def burst_without_reading():
    """40 MB sent while the client reads nothing: the proxy stops reading
    the side whose peer is not keeping up and resumes, so every message
    arrives whole and in order."""
    p = start_proxy()
    chunks = [bytes([i]) * (1 << 20) for i in range(40)]

    async def go():
        async with connect(p, echo(), max_queue=1) as ws:
            await asyncio.gather(*[ws.send(c) for c in chunks])
            got = [await ws.recv() for _ in chunks]
            return got
    got = run(go())
    assert [g[:1] for g in got] == [c[:1] for c in chunks], [g[:1] for g in got]
    assert got == chunks


@test
def open_connection_at_shutdown():
    """SIGTERM with a WebSocket open: the proxy exits and the flow, with the
    messages so far, is still recorded."""
    H.skip_if_mitmdump("mitmdump keeps no flow of an unfinished WebSocket")
    d = H.tmpdir("wsstop")
    path = os.path.join(d, "flows")
    p = start_proxy("-w", path)

    async def go():
        ws = await connect(p, echo())
        await ws.send("still open")
        assert await ws.recv() == "still open"
        rc = p.stop()       # blocks this loop: fine, the proxy ends the connection
        ws.transport.abort()
        return rc
    assert run(go()) == 0
    r = read_dump(path, "~websocket & ~b 'still open'")
    assert r.returncode == 0, r
    o = r.stdout.decode()
    assert o.count("WebSocket text message") == 2 and "ABNORMAL_CLOSURE" in o, o


@test(timeout=60)
def mitmdump_file_read_back():
    """A WebSocket flow mitmdump saved reads back with its messages, close
    code and reason, and prints as mitmdump printed it."""
    H.need_mitmdump()
    d = H.tmpdir("wsmd")
    path = os.path.join(d, "flows")
    p = H.Proxy(["-w", path, "--set", "flow_detail=3"], binary=H.MITMDUMP, label="mitmdump").start()

    async def go():
        async with connect(p, echo()) as ws:
            await ws.send("from mitmdump")
            await ws.recv()
            await ws.send(b"\x00\x01")
            await ws.recv()
            await ws.send("close:4001")
            try:
                await ws.recv()
            except websockets.exceptions.ConnectionClosed:
                pass
    run(go())
    assert p.wait_output("UNKNOWN_ERROR=4001", timeout=10), p.stdout
    p.stop()
    def ws_block(text):
        """from the first message line to the close line, content included"""
        lines = text.splitlines()
        ws = [i for i, l in enumerate(lines)
              if " WebSocket " in l and not l.startswith(" ") or l.startswith("Error in WebSocket")]
        first, last = min(ws), max(ws)
        return lines[first:last + 1]
    theirs = ws_block(p.stdout)
    r = read_dump(path, "~websocket & ~b 'from mitmdump'")
    assert r.returncode == 0, r
    ours = ws_block(r.stdout.decode())
    assert sum("WebSocket" in l for l in ours) == 6, ours      # 5 messages, the close
    assert "    0000000000 00 01" + " " * 45 + ".." in ours, ours   # mitmproxy's Hex view
    assert ours == theirs, (ours, theirs)


if __name__ == "__main__":
    H.main()
