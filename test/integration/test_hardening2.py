#!/usr/bin/python3
"""Hardening, round two (issue 20): filters that could not answer say so
(-r, fail_on, the -w filter, mitm.filter, option filters); counts and sizes
in files are bounded like live traffic; map_local refuses names without
contacting the server; a WebSocket frame too large gives 1009 to both sides;
a CA key others can read is refused; a full disk while recording is said
once and fails the exit status."""
import os
import resource
import socket
import struct
import subprocess
import threading
import time

import harness as H
from harness import test, fixture
from backend import Backend
from tcpserver import ThreadedServer

# A regex that backtracks catastrophically on a run of x's: PCRE2 gives up
# (match limit) where "x$" alone would match.
BAD_U = '~u "x$|(x+x+)+y"'
XPATH = "/echo?q=" + "x" * 60


@fixture
def backend():
    return Backend().start()


def run(*args, timeout=60, **kw):
    return subprocess.run([H.BIN] + [str(a) for a in args], capture_output=True,
                          timeout=timeout, **kw)


def record(backend, paths, extra=(), body=None):
    """A dump of one GET per path through a proxy; returns its path."""
    path = os.path.join(H.tmpdir("rec"), "flows.dump")
    p = H.Proxy(["-q", "-w", path] + list(extra)).start()
    for u in paths:
        r = H.curl(backend.url(u), proxy=p, data=body)
        assert r.rc == 0, r
    assert p.stop() == 0, p.describe()
    return path


def one_line(stderr, needle):
    lines = [l for l in stderr.decode("utf-8", "replace").splitlines() if needle in l]
    assert lines, "no line with %r in %r" % (needle, stderr[-2000:])
    return lines[0]


# ---- 1. filters never answer wrongly ------------------------------------------

@test(timeout=60)
def test_filter_error_r_exits_nonzero():
    b = backend()
    dump = record(b, [XPATH])
    r = run("-n", "-r", dump, '~u "x$"')
    assert r.returncode == 0 and b"xxxx" in r.stdout, r
    r = run("-n", "-r", dump, BAD_U)
    assert r.returncode == 1, r
    line = one_line(r.stderr, "could not be evaluated")
    assert BAD_U in line and "limit" in line, line
    # the flow is shown (not silently dropped) and saved by -w
    assert b"xxxx" in r.stdout, r
    out = os.path.join(H.tmpdir("w"), "out.dump")
    r = run("-n", "-q", "-r", dump, "-w", out, BAD_U)
    assert r.returncode == 1, r
    r = run("-n", "-r", out)
    assert r.returncode == 0 and r.stdout.count(b"GET ") == 1, r


@test(timeout=60)
def test_filter_error_fail_on_fails():
    b = backend()
    body = b"a" * 300 + b"secret"
    p = H.Proxy(["-q", "--set", 'fail_on=~bq "(a+)+c|secret"'], expect_rc=3).start()
    r = H.curl(b.url("/echo"), proxy=p, data=body)
    assert r.rc == 0 and r.status == 200, r
    assert p.stop() == 3, p.describe()
    line = one_line(open(p.err_path, "rb").read(), "fail_on")
    assert "(a+)+c|secret" in line and "could not be evaluated" in line, line
    # the same from a file
    dump = record(b, ["/echo"], body=body)
    r = run("-n", "-q", "-r", dump, "--set", 'fail_on=~bq "(a+)+c|secret"')
    assert r.returncode == 3, r


@test(timeout=60)
def test_filter_error_live_w_saves():
    b = backend()
    out = os.path.join(H.tmpdir("w"), "live.dump")
    p = H.Proxy(["-q", "-w", out, BAD_U], expect_rc=1).start()
    r = H.curl(b.url(XPATH), proxy=p)
    assert r.rc == 0 and r.status == 200, r
    assert p.stop() == 1, p.describe()
    assert BAD_U in one_line(open(p.err_path, "rb").read(), "could not be evaluated")
    r = run("-n", "-r", out)
    assert r.returncode == 0 and r.stdout.count(b"GET ") == 1, r


@test(timeout=60)
def test_filter_error_in_lua_and_options():
    b = backend()
    d = H.tmpdir("lua")
    s = os.path.join(d, "f.lua")
    H.write(s, """
local f = mitm.filter('~u "x$|(x+x+)+y"')
function response(flow)
  local ok, e = pcall(f, flow)
  mitm.log.warn("pcall " .. tostring(ok) .. " " .. tostring(e))
end
""")
    dump = record(b, [XPATH])
    r = run("-n", "-r", dump, "-s", s)
    line = one_line(r.stderr, "pcall")
    assert "pcall false" in line and "could not be evaluated" in line, line
    # an option's flow filter that could not answer is not applied, and says so
    p = H.Proxy(["-q", "--set", "modify_headers=/" + BAD_U + "/X-Mark/1"]).start()
    r = H.curl(b.url(XPATH), proxy=p)
    assert r.rc == 0 and r.status == 200, r
    p.stop()
    line = one_line(open(p.err_path, "rb").read(), "could not be evaluated")
    assert "not applied" in line, line



# ---- 4. counts and sizes in files are bounded like live traffic ---------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(tag, data):
    return varint(tag << 3 | 2) + varint(len(data)) + data


def native_dump(record_fields):
    """A native dump of one flow record (mitmlua-dump(5)), compressed with
    the zstd tool: file header, then one block."""
    rec = varint(1) + varint(len(record_fields)) + record_fields
    z = subprocess.run(["zstd", "-19", "-q", "-c"], input=rec, capture_output=True,
                       check=True, timeout=120).stdout
    head = b"MITMLUA\0" + struct.pack("<HH", 1, 0)
    head += struct.pack("<I", crc32c(head))
    bh = b"\xb7MLB" + struct.pack("<I", len(z)) + bytes([3, 0, 0, 0])
    bh += struct.pack("<I", crc32c(z))
    bh += struct.pack("<I", crc32c(bh))
    return head + bh + z


def run_measured(args, timeout=60):
    """Run the binary; returns (CompletedProcess, peak RSS of the child in
    KiB, seconds)."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M"] + [H.BIN] + [str(a) for a in args],
                       capture_output=True, timeout=timeout)
    dt = time.monotonic() - t0
    lines = r.stderr.decode("utf-8", "replace").splitlines()
    rss = [int(l.split()[1]) for l in lines if l.startswith("MAXRSS ")]
    assert rss, r
    return r, rss[-1], dt


@test(timeout=120)
def test_dump_header_bomb_refused():
    # 20 million empty header fields: 40 MB of record, 11 KB of file
    req = field(1, b"GET") + field(2, b"http") + field(4, b"example.com") + field(6, b"/")
    req += field(8, b"") * 20_000_000
    body = field(1, b"bomb-0000-0000-0000-000000000000") + field(5, req)
    path = os.path.join(H.tmpdir("bomb"), "bomb.dump")
    data = native_dump(body)
    open(path, "wb").write(data)
    assert len(data) < 20_000, len(data)
    r, rss, dt = run_measured(["-n", "-r", path])
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 1, (r.returncode, err[-1000:])
    line = one_line(r.stderr, "refused")
    assert path in line and "offset" in line and "bomb-0000" in line, line
    assert "max_headers" in line and "request" in line, line
    assert rss < 200 * 1024, "peak RSS %d KiB reading an %d-byte file" % (rss, len(data))
    assert dt < 20, dt


@test(timeout=60)
def test_file_limits_follow_options():
    d = H.tmpdir("lim")
    hdrs = b"".join(field(8, field(1, b"X-%d" % i) + field(2, b"v")) for i in range(300))
    req = field(1, b"GET") + field(2, b"http") + field(4, b"example.com") + field(6, b"/")
    path = os.path.join(d, "many.dump")
    open(path, "wb").write(native_dump(field(5, req + hdrs)))
    r = run("-n", "-r", path)
    assert r.returncode == 1 and b"more than 256 header fields (max_headers)" in r.stderr, r
    # the same limits as live traffic: raising the option admits the flow
    r = run("-n", "-r", path, "--set", "max_headers=400")
    assert r.returncode == 0 and b"GET http://example.com" in r.stdout, r
    r = run("-n", "-r", path, "--set", "max_headers=400", "--set", "max_header_size=1k")
    assert r.returncode == 1 and b"max_header_size" in r.stderr, r
    big = field(5, req + field(10, b"x" * 5000))
    path2 = os.path.join(d, "body.dump")
    open(path2, "wb").write(native_dump(big))
    r = run("-n", "-r", path2, "--set", "body_size_limit=4k")
    assert r.returncode == 1 and b"body_size_limit" in r.stderr, r
    assert run("-n", "-r", path2).returncode == 0


def tnet(v):
    if isinstance(v, bytes):
        return b"%d:%s," % (len(v), v)
    if isinstance(v, str):
        e = v.encode()
        return b"%d:%s;" % (len(e), e)
    if isinstance(v, bool):
        s = b"true" if v else b"false"
        return b"%d:%s!" % (len(s), s)
    if isinstance(v, int):
        s = str(v).encode()
        return b"%d:%s#" % (len(s), s)
    if isinstance(v, float):
        s = repr(v).encode()
        return b"%d:%s^" % (len(s), s)
    if v is None:
        return b"0:~"
    if isinstance(v, list):
        c = b"".join(tnet(x) for x in v)
        return b"%d:%s]" % (len(c), c)
    if isinstance(v, dict):
        c = b"".join(tnet(k) + tnet(x) for k, x in v.items())
        return b"%d:%s}" % (len(c), c)
    raise TypeError(v)


@test(timeout=60)
def test_mitmproxy_and_har_files_bounded():
    d = H.tmpdir("lim2")
    conn = {"id": "c", "address": None, "peername": None, "timestamp_start": 1.0}
    req = {"method": b"GET", "scheme": b"http", "authority": b"", "host": "example.com",
           "port": 80, "path": b"/", "http_version": b"HTTP/1.1",
           "headers": [[b"X-%d" % i, b"v"] for i in range(300)], "content": b"",
           "trailers": None, "timestamp_start": 1.0, "timestamp_end": 1.0}
    fl = {"version": 18, "type": "http", "id": "mitm-many-headers", "client_conn": conn,
          "server_conn": conn, "request": req, "response": None, "error": None,
          "marked": "", "metadata": {}, "comment": "", "is_replay": None}
    path = os.path.join(d, "many.flows")
    open(path, "wb").write(tnet(fl))
    r = run("-n", "-r", path)
    assert r.returncode == 1, r
    line = one_line(r.stderr, "max_headers")
    assert path in line and "mitm-many-headers" in line and "request" in line, line
    assert run("-n", "-r", path, "--set", "max_headers=400").returncode == 0
    import json
    har = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [{
        "startedDateTime": "2024-01-01T00:00:00.000Z", "time": 1,
        "request": {"method": "GET", "url": "http://example.com/", "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "X-%d" % i, "value": "v"} for i in range(300)],
                    "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
        "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                     "headers": [], "cookies": [], "content": {"size": 5000, "mimeType": "x",
                                                               "text": "x" * 5000},
                     "redirectURL": "", "headersSize": -1, "bodySize": 5000},
        "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}}]}}
    path = os.path.join(d, "many.har")
    open(path, "w").write(json.dumps(har))
    r = run("-n", "-r", path)
    assert r.returncode == 1, r
    line = one_line(r.stderr, "max_headers")
    assert path in line and "entry 0" in line, line
    r = run("-n", "-r", path, "--set", "max_headers=400", "--set", "body_size_limit=4k")
    assert r.returncode == 1 and b"body_size_limit" in r.stderr, r
    assert run("-n", "-r", path, "--set", "max_headers=400").returncode == 0



# ---- 5. map_local refuses names without contacting the server -----------------

@test(timeout=60)
def test_map_local_refused_names_never_reach_server():
    b = backend()
    d = H.tmpdir("ml")
    root = os.path.join(d, "root")
    os.makedirs(os.path.join(root, "sub"))
    H.write(os.path.join(root, "ok.txt"), "local ok\n")
    H.write(os.path.join(root, "sub", "ok.txt"), "sub ok\n")
    H.write(os.path.join(d, "secret.txt"), "secret\n")
    os.symlink(os.path.join(d, "secret.txt"), os.path.join(root, "link.txt"))
    p = H.Proxy(["-q", "--set", "map_local=|/x/|" + root]).start()

    def get(path):
        b.clear()
        req = ("GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
               % (b.netloc, path, b.netloc)).encode()
        got, _ = H.raw("127.0.0.1", p.port, req, timeout=10)
        return H.status_of(got), got

    st, got = get("/x/ok.txt")
    assert st == 200 and got.endswith(b"local ok\n"), got
    for path in ("/x/../secret.txt", "/x/%2e%2e/secret.txt", "/x/%2E%2E/secret.txt",
                 "/x/..%2fsecret.txt", "/x/%2e%2e%2fsecret.txt", "/x/sub%2fok.txt",
                 "/x/sub%5cok.txt", "/x/..\\secret.txt", "/x/ok.txt%00.png",
                 "/x/%00", "/x/sub/ok.txt%00", "/x/link.txt", "/x/%2fetc/passwd",
                 "/x//etc/passwd"):
        st, got = get(path)
        assert st == 404, (path, got[:300])
        assert b"local ok" not in got and b"secret" not in got, (path, got)
        time.sleep(0.05)
        assert b.paths() == [], "%s reached the server: %r" % (path, b.paths())
    # a path map_local does not match still goes to the server
    st, _ = get("/echo")
    assert st == 200 and b.paths() == ["/echo"], b.paths()
    p.stop()



# ---- 9. a CA key others can read is refused -------------------------------------

@test(timeout=60)
def test_loose_confdir_key_refused():
    conf = os.path.join(H.tmpdir("loose"), "conf")
    r = run("--confdir", conf, "--print-env", timeout=30)
    assert r.returncode == 0, r
    key = os.path.join(conf, "mitmlua-ca.pem")
    os.chmod(conf, 0o777)
    for mode in (0o644, 0o640, 0o604):
        os.chmod(key, mode)
        for args in (["--print-env"], ["-p", "0"]):
            r = run("--confdir", conf, *args, timeout=30)
            assert r.returncode == 1, (oct(mode), args, r)
            lines = r.stderr.decode().strip().splitlines()
            line = one_line(r.stderr, "private key")
            assert key in line and "%04o" % mode in line and "chmod 600" in line, line
            assert len([l for l in lines if "mitmlua:" in l]) == 1, lines
            assert b"export" not in r.stdout, r
    # the key is left as it was: the user decides
    assert os.stat(key).st_mode & 0o777 == 0o604
    os.chmod(key, 0o600)
    r = run("--confdir", conf, "--print-env", timeout=30)
    assert r.returncode == 0, r
    assert b"writable by other users" in r.stderr, r
    os.chmod(conf, 0o700)
    r = run("--confdir", conf, "--print-env", timeout=30)
    assert r.returncode == 0 and b"writable" not in r.stderr, r



# ---- 10. disk full while recording ------------------------------------------------

@test(timeout=90)
def test_disk_full_while_recording():
    b = backend()
    mnt = H.tmpdir("full")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt],
                       capture_output=True, timeout=10)
    if r.returncode != 0:
        H.skip("cannot mount a small tmpfs here: %s" % r.stderr.decode().strip())
    try:
        out = os.path.join(mnt, "flows.dump")
        p = H.Proxy(["-w", out], expect_rc=1).start()
        n = 24
        for i in range(n):
            r = H.curl(b.url("/upload"), proxy=p, data=os.urandom(16384))
            assert r.rc == 0 and r.status == 200, (i, r)   # it keeps serving
        assert p.wait_output("No space left on device", timeout=10, stream="stderr"), p.describe()
        during = p.stderr
        rc = p.stop()
        err = p.stderr
        assert rc == 1, (rc, p.describe())
        # the cause once, when it happened; no line per flow
        assert during.count("No space left on device") == 1, during
        assert "could not queue" not in err, err
        told = [l for l in err.splitlines() if "flows from now on are not saved" in l]
        assert len(told) == 1 and out in told[0], err
        import re
        m = re.search(r"No space left on device; (\d+) flows? not saved", err)
        assert m, err
        lost = int(m.group(1))
        # what was saved before the disk filled reads back intact
        r = run("-n", "-r", out)
        saved = r.stdout.count(b"POST ")
        assert saved >= 1 and saved + lost == n, (saved, lost, r)
    finally:
        subprocess.run(["umount", "-l", mnt], timeout=10)



# ---- 6. a WebSocket frame too large gives 1009 to both sides ----------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_read_frame(s, buf, timeout=10, slow=False):
    """One frame (op, payload, rest) from s after buf; None on EOF.  slow:
    read in small pieces with pauses, a client that cannot keep up."""
    end = time.monotonic() + timeout

    def need(n):
        nonlocal buf
        while len(buf) < n:
            s.settimeout(max(0.05, end - time.monotonic()))
            if slow:
                time.sleep(0.002)
            c = s.recv(16384 if slow else 65536)
            if not c:
                return False
            buf += c
        return True
    if not need(2):
        return None
    op, masked, n = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
    h = 2
    if n == 126:
        if not need(4):
            return None
        n, h = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if not need(10):
            return None
        n, h = struct.unpack(">Q", buf[2:10])[0], 10
    mk = b""
    if masked:
        if not need(h + 4):
            return None
        mk, h = buf[h:h + 4], h + 4
    if not need(h + n):
        return None
    data = buf[h:h + n]
    if masked:
        data = bytes(b ^ mk[i % 4] for i, b in enumerate(data))
    return op, data, buf[h + n:]


class HugeFrameServer(ThreadedServer):
    """Answers the WebSocket handshake, then sends a binary frame header that
    declares a 2^63-1 byte payload; records the first frame it gets back."""

    def __init__(self, mode="wait", tls=None):
        self.mode = mode   # before the server starts: _one reads it
        super().__init__(tls)

    def _one(self, c):
        import base64
        import hashlib
        try:
            c.settimeout(10)
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key:")][0]
            acc = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            hs = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            huge = b"\x82\x7f" + struct.pack(">Q", 2 ** 63 - 1) + b"x" * 100
            if self.mode == "deaf":       # never reads again; holds the line open
                c.sendall(hs)
                self.got.append("deaf")
                time.sleep(20)
                return
            if self.mode == "together":   # the frame in the handshake's packet, then EOF
                c.sendall(hs + huge)
                self.got.append("closed")
                return
            if self.mode == "flood":      # 4 MB of messages first, then the frame
                c.sendall(hs)
                msg = b"\x82\x7e" + struct.pack(">H", 65000) + b"m" * 65000
                c.sendall(msg * 64 + huge)
            elif self.mode == "together-wait":
                c.sendall(hs + huge)
            else:
                c.sendall(hs)
                c.sendall(huge)
            if self.mode == "rst":        # then a reset instead of a close
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.got.append("reset")
                return
            if self.mode == "close":
                self.got.append("closed")
                return
            if self.mode == "stream":
                try:
                    for _ in range(200):
                        c.sendall(b"x" * 65536)
                except OSError:
                    pass
            while True:   # the client's messages first, then the close
                f = ws_read_frame(c, buf)
                if not f or f[0] == 8:
                    break
                buf = f[2]
            self.got.append(f[:2] if f else None)
        except OSError as e:
            self.got.append(repr(e))
        finally:
            c.close()


@test(timeout=120)
def test_websocket_huge_frame_1009_both_sides():
    pki = H.PKI()
    tls = pki.leaf()
    for how in ("plain", "tls"):
        for mode in ("flood", "wait", "close", "stream", "together", "together-wait"):
            huge_frame(mode, how, pki, tls)


def huge_frame(mode, how, pki, tls):
    import ssl
    srv = HugeFrameServer(mode, tls if how == "tls" else None)
    p = H.Proxy(["-q", "--set", "ssl_verify_upstream_trusted_ca=" + pki.ca_cert]).start()
    bad = []
    n = 20
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        if how == "tls":
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                      % (srv.port, srv.port))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                assert d, buf
                buf += d
            assert b" 200 " in buf.split(b"\r\n")[0], buf
            ctx = ssl.create_default_context(cafile=p.ca())
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        target = "/ws" if how == "tls" else "http://127.0.0.1:%d/ws" % srv.port
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (target, srv.port)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            assert d, buf
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        # a client that talks while the frame arrives: its bytes are still
        # unread in the proxy when the proxy ends the connection
        stop = threading.Event()

        def chat():
            msg = b"\x81\x85\x01\x02\x03\x04" + bytes(c ^ k for c, k in zip(b"hello", b"\x01\x02\x03\x04\x01"))
            try:
                while not stop.is_set():
                    s.sendall(msg * 20)
                    time.sleep(0.001)
            except OSError:
                pass
        t = threading.Thread(target=chat, daemon=True)
        t.start()
        try:
            while True:
                f = ws_read_frame(s, buf, slow=mode == "flood")
                if not f or f[0] == 8:
                    break
                buf = f[2]
        except OSError as e:
            f = repr(e)
        stop.set()
        t.join(5)
        s.close()
        if not (isinstance(f, tuple) and f[0] == 8 and struct.unpack(">H", f[1][:2])[0] == 1009):
            bad.append((i, "client", f))
    assert H.wait_for(lambda: len(srv.got) == n, timeout=15), srv.got
    for i, g in enumerate(srv.got):
        if mode in ("close", "together"):
            continue
        if not (isinstance(g, tuple) and g[0] == 8 and struct.unpack(">H", g[1][:2])[0] == 1009):
            bad.append((i, "server", g))
    assert not bad, "%s %s: %d of %d sides without a 1009 close: %r" % (how, mode, len(bad), 2 * n, bad[:6])
    p.stop()


@test(timeout=60)
def test_websocket_server_side_lingering_at_shutdown():
    """A relay ended by the client while the server reads nothing: the
    server side lingers to write what is queued for it.  Stopping the
    proxy then still frees it (the ASan build would report a leak) and the
    proxy exits 0 at once, not after the linger's five seconds."""
    srv = HugeFrameServer("deaf")
    p = H.Proxy(["-q"]).start()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(("GET http://127.0.0.1:%d/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (srv.port, srv.port)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, buf
        buf += d
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    # 16 MB of masked messages: far more than the kernel buffers and the
    # relay's high mark hold, so some stay queued in the proxy
    msg = b"\x82\xfe" + struct.pack(">H", 65000) + b"\0\0\0\0" + b"m" * 65000
    s.settimeout(0.5)
    sent = 0
    try:
        for _ in range(256):
            s.sendall(msg)
            sent += 1
    except OSError:
        pass
    assert sent > 16, sent   # the relay read and queued a good part
    s.close()
    time.sleep(0.5)          # the relay ends; the server side lingers
    t0 = time.time()
    assert p.stop() == 0, p.describe()
    assert time.time() - t0 < 4, time.time() - t0


# ---- the host a request names, and HTTP/2 connection errors --------------

@test(timeout=60)
def test_absolute_form_host_replaced():
    p = H.Proxy(["-q"]).start()
    b = backend()
    before = len(b.log)
    req = ("GET http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: other.example\r\n"
           "Connection: close\r\n\r\n" % b.port).encode()
    out, _ = H.raw("127.0.0.1", p.port, req)
    assert H.status_of(out) == 200, out[:200]
    seen = b.log[before:]
    assert len(seen) == 1, seen
    hosts = [v for k, v in seen[0]["headers"] if k.lower() == "host"]
    assert hosts == ["127.0.0.1:%d" % b.port], seen[0]["headers"]
    assert p.stop() == 0


def _frames(data):
    """(type, flags, stream, payload) of every whole HTTP/2 frame in data."""
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        if i + 9 + n > len(data):
            break
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF,
                    data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def _h2_over_tls(p, target):
    """CONNECT through p to target, TLS with ALPN h2 (the proxy's minted
    certificate), the client preface and an empty SETTINGS frame."""
    import ssl
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    ctx = ssl.create_default_context(cafile=p.ca())
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    t = ctx.wrap_socket(s, server_hostname="localhost")
    assert t.selected_alpn_protocol() == "h2", t.selected_alpn_protocol()
    t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    return t


def _read_to_eof(t, limit=5):
    data, end = b"", time.monotonic() + limit
    t.settimeout(1)
    while time.monotonic() < end:
        try:
            chunk = t.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


@test(timeout=60)
def test_h2_over_tls_connection_error_sends_goaway():
    p = H.Proxy(["-q"]).start()
    bad = {
        "data on stream 0": b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
        "zero window update": b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    }
    for what, frame in bad.items():
        t = _h2_over_tls(p, "127.0.0.1:%d" % backend().port)
        t.sendall(frame)
        frames = _frames(_read_to_eof(t))
        t.close()
        goaway = [f for f in frames if f[0] == 7]
        assert goaway, (what, frames)
        code = int.from_bytes(goaway[0][3][4:8], "big")
        assert code == 1, (what, code)          # PROTOCOL_ERROR
    assert p.stop() == 0


@test(timeout=60)
def test_h2_content_length_over_limit_refused_at_headers():
    import h2.config
    import h2.connection
    import h2.events
    p = H.Proxy(["-q", "--mode", "reverse:" + backend().url("/"), "--set", "body_size_limit=1k"]).start()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "x"),
                       (":path", "/upload"), ("content-length", "10000000")], end_stream=False)
    s.sendall(c.data_to_send())
    status, end = None, time.monotonic() + 3
    s.settimeout(0.5)
    while status is None and time.monotonic() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers).get(b":status")
        s.sendall(c.data_to_send())
    s.close()
    # answered without any body byte sent: refused at the headers
    assert status == b"413", status
    assert p.stop() == 0


# ---- Lua that escapes its limits -------------------------------------------

def _lua(name, text):
    path = os.path.join(H.tmpdir("lua"), name + ".lua")
    H.write(path, text)
    return path


@test(timeout=60)
def test_script_timeout_is_on_by_default():
    s = _lua("spin", """
function request(flow)
  if flow.request.path:find("spin") then while true do end end
end
""")
    p = H.Proxy(["-s", s]).start()
    t0 = time.monotonic()
    r = H.curl(backend().url("/echo?spin"), proxy=p, max_time=30)
    assert r.status == 502 and b"script_timeout (10000 ms)" in r.body, r
    assert 9 < time.monotonic() - t0 < 20
    assert H.curl(backend().url("/echo"), proxy=p).status == 200
    assert p.stop() == 0


@test(timeout=60)
def test_lua_cannot_lift_script_timeout():
    s = _lua("escape", """
local sethook = debug.sethook          -- a reference taken at load time
function request(flow)
  local p = flow.request.path
  if p:find("sethook") then sethook(); while true do end end
  if p:find("jiton") then jit.on(); local i = 0; while true do i = i + 1 end end
end
""")
    p = H.Proxy(["-s", s, "--set", "script_timeout=200"]).start()
    for what in ("sethook", "jiton"):
        r = H.curl(backend().url("/echo?" + what), proxy=p, max_time=10)
        assert r.status in (200, 502), (what, r)       # the hook stopped: the flow went on
        assert p.wait_output("%s is not available with script_timeout" %
                             ("debug.sethook" if what == "sethook" else "jit.on"), stream="stderr"), p.stderr
    assert H.curl(backend().url("/echo"), proxy=p).status == 200
    assert p.stop() == 0


@test(timeout=60)
def test_sigterm_ends_a_run_whose_worker_is_stuck():
    out = os.path.join(H.tmpdir("stuck"), "flows.dump")
    s = _lua("forever", """
function request(flow)
  if flow.request.path:find("forever") then while true do end end
end
""")
    # no time limit (script_timeout=0): only the signal path can end this
    p = H.Proxy(["-s", s, "-w", out, "--set", "script_timeout=0"], expect_rc=1).start()
    assert H.curl(backend().url("/echo?first"), proxy=p).status == 200
    threading.Thread(target=lambda: H.curl(backend().url("/echo?forever"), proxy=p, max_time=15),
                     daemon=True).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    rc = p.stop(timeout=15)
    assert rc == 1 and time.monotonic() - t0 < 10, (rc, time.monotonic() - t0)
    assert "did not stop within" in p.stderr, p.stderr
    r = run("-n", "-r", out)
    assert r.returncode == 0 and b"/echo?first" in r.stdout, r       # the dump was flushed


@test(timeout=60)
def test_lua_memory_limit():
    s = _lua("hog", """
function request(flow)
  if flow.request.path:find("hog") then
    local t = {}
    for i = 1, 100000 do t[#t + 1] = string.rep("x", 1000000) .. i end
  end
end
""")
    p = H.Proxy(["-s", s, "--set", "script_memory_limit=64"]).start()
    r = H.curl(backend().url("/echo?hog"), proxy=p, max_time=30)
    assert r.status == 502 and b"script_memory_limit (64 MiB)" in r.body and s.encode() in r.body, r
    rss = H.rss_kb(p.proc.pid)
    assert rss < 48 * 1024, rss                 # given back, not kept
    assert H.curl(backend().url("/echo"), proxy=p).status == 200
    assert p.stop() == 0


@test(timeout=60)
def test_h2_unread_large_response_held_once():
    import h2.config
    import h2.connection
    import h2.events
    size = 64 << 20
    # under ASan, freed blocks wait in a quarantine: without it the peak is
    # the program's own (the redzones of a few large blocks add little)
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=0"
    try:
        p = H.Proxy(["-q", "--mode", "reverse:" + backend().url("/")]).start()
    finally:
        if saved is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = saved
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                       (":path", "/bytes/%d" % size)], end_stream=True)
    s.sendall(c.data_to_send())
    s.settimeout(0.5)
    head, end = False, time.monotonic() + 20
    while not head and time.monotonic() < end:      # the head, then never a WINDOW_UPDATE
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        assert data, "connection closed"
        head = any(isinstance(ev, h2.events.ResponseReceived) for ev in c.receive_data(data))
    assert head
    def hwm():
        with open("/proc/%d/status" % p.proc.pid) as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) * 1024
    time.sleep(1)
    # the body is in memory once (the stream's), not also in the flow
    assert hwm() < size * 1.5, hwm()
    s.close()
    assert p.stop() == 0


if __name__ == "__main__":
    H.main()
