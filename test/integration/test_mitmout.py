#!/usr/bin/python3
"""mitmproxy's flow format out (issue 18): `-w FILE.mitm` or `--set
save_format=mitmproxy` write mitmproxy 8's own flow file, and `mitmlua -n
-r a.mitmlua -w b.mitm` converts.  mitmdump 8.1.1 reads what mitmlua wrote
and prints the same flows as mitmlua prints from its own recording: live
HTTP/1, HTTP/2 (through a TLS tunnel), errors (an unreachable server), and
WebSocket and TCP flows (from mitmproxy's own test helpers, through mitmlua
and back: mitmdump prints the copy as it prints the original)."""
import os
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


@fixture
def backend():
    return Backend().start()


def need_both():
    if H.IS_MITMDUMP:
        H.skip("a differential test runs both programs itself")
    return H.need_mitmdump()


def printed(binary, path, detail="2"):
    home = H.tmpdir("home")
    cmd = [binary, "-n", "-r", path, "--flow-detail", detail]
    if binary == H.BIN:
        cmd += ["--confdir", os.path.join(home, "conf")]
    r = subprocess.run(cmd, capture_output=True, timeout=60, env=dict(os.environ, HOME=home),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (cmd, r.returncode, r.stderr.decode())
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    return r.stdout.decode("utf-8", "replace").replace("\r\n", "\n")


def run(*args):
    home = H.tmpdir("home")
    r = subprocess.run([H.BIN] + [str(a) for a in args] + ["--confdir", os.path.join(home, "c")],
                       capture_output=True, timeout=60, env=dict(os.environ, HOME=home), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (args, r.stderr.decode())
    return r


@fixture
def recording():
    """HTTP/1 (GET, POST), HTTP/2 in a TLS tunnel, and a failed flow,
    recorded live twice: in mitmlua's format and directly as .mitm."""
    need_both()
    d = H.tmpdir("rec")
    native, direct = os.path.join(d, "flows.mitmlua"), os.path.join(d, "live.mitm")
    for path in (native, direct):
        p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert, "-w", path], label="rec").start()
        assert H.curl(backend().url("/bytes/30"), proxy=p).status == 200
        r = H.curl(backend().url("/echo"), proxy=p, method="POST", data=b'{"a": 1}',
                   headers=["Content-Type: application/json"])
        assert r.status == 200, r
        r = H.curl(tls_backend().url("/bytes/10", scheme="https", host="localhost"), proxy=p, cacert=p.ca(),
                   http11=False, args=["--http2"])
        assert r.status == 200, r
        r = H.curl("http://127.0.0.1:%d/nothing" % H.free_port(), proxy=p)
        assert r.status == 502, r
        assert p.stop() == 0, p.stderr
    return native, direct


@test(timeout=120)
def converted_file_prints_the_same_in_mitmdump():
    md = need_both()
    native, _ = recording()
    out = os.path.join(H.tmpdir("conv"), "converted.mitm")
    run("-n", "-r", native, "-w", out)
    for detail in ("1", "2", "3"):
        want = printed(H.BIN, native, detail)
        got = printed(md, out, detail)
        assert want == got, "detail %s\nmitmlua from its dump:\n%s\nmitmdump from the .mitm:\n%s" % (detail, want, got)
    assert "HTTP/2.0" in got and " << error connecting" in got and "POST" in got, got


@test(timeout=120)
def live_mitm_suffix_writes_mitmproxy_format():
    md = need_both()
    native, direct = recording()
    with open(direct, "rb") as fh:
        head = fh.read(16)
    assert head[:1].isdigit() and b":" in head, head   # a tnetstring, not the native dump
    got = printed(md, direct, "1")
    assert got.count("<< ") == 4 and "HTTP/2.0" in got and "<< error" in got, got
    # and mitmlua reads its own .mitm back as it reads the native file
    assert printed(H.BIN, direct, "2") == printed(md, direct, "2")


@test(timeout=120)
def save_format_option_chooses_either_way():
    md = need_both()
    native, _ = recording()
    d = H.tmpdir("fmt")
    a, b = os.path.join(d, "a.flows"), os.path.join(d, "b.mitm")
    run("-n", "-r", native, "-w", a, "--set", "save_format=mitmproxy")
    run("-n", "-r", native, "-w", b, "--set", "save_format=mitmlua")
    assert printed(md, a, "1").count("<< ") == 4
    with open(b, "rb") as fh:
        assert not fh.read(1).isdigit()   # the native dump's magic, not a tnetstring
    assert printed(H.BIN, b, "1") == printed(H.BIN, native, "1")
    r = subprocess.run([H.BIN, "-n", "--set", "save_format=har"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "save_format" in r.stderr, r


GEN = r'''
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from mitmproxy import io
from mitmproxy.test import tflow
ws = tflow.twebsocketflow()
ws.websocket.close_code, ws.websocket.close_reason = 1001, "going away"
flows = [ws, tflow.ttcpflow(), tflow.tflow(resp=True), tflow.tflow(err=True)]
flows[2].request.http_version = flows[2].response.http_version = "HTTP/2.0"
flows[2].metadata["note"] = {"k": [1, 2.5, "x"]}
flows[2].comment = "kept"
flows[2].marked = ":default:"
with open(sys.argv[1], "wb") as fh:
    w = io.FlowWriter(fh)
    for f in flows:
        w.add(f)
'''


@test(timeout=120)
def websocket_tcp_and_metadata_survive_the_round_trip():
    md = need_both()
    d = H.tmpdir("ws")
    src, out = os.path.join(d, "src.mitm"), os.path.join(d, "out.mitm")
    r = subprocess.run(["/usr/bin/python3", "-c", GEN, src], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    run("-n", "-r", src, "-w", out)
    for detail in ("2", "3"):
        assert printed(md, src, detail) == printed(md, out, detail)
    check = r'''
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from mitmproxy import io
with open(sys.argv[1], "rb") as fh:
    fl = list(io.FlowReader(fh).stream())
h = fl[2]
print(len(fl), fl[0].websocket.close_code, fl[0].websocket.close_reason, len(fl[0].websocket.messages),
      len(fl[1].messages), h.metadata["note"]["k"], h.comment, h.marked, fl[3].error.msg)
'''
    r = subprocess.run(["/usr/bin/python3", "-c", check, out], capture_output=True, timeout=60, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4", "1001", "going", "away", "3", "2", "[1,", "2.5,", "'x']", "kept",
                                ":default:", "error"], r.stdout


if __name__ == "__main__":
    H.main()
