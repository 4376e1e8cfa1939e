#!/usr/bin/python3
"""Content views, differential: the same flows (a mitmproxy flow file made
with mitmproxy's own test helpers, which both programs read) printed by
mitmdump 8.1.1 and by mitmlua at --flow-detail 3 and 4 must be the same
text.  Bodies: JSON, a form, a query string, XML, HTML, protobuf, gRPC,
msgpack, PNG, GIF, JPEG, ICO, other binary (hex), text with escapes, a body
past 70 lines (cut off at detail 3), a WebSocket flow, and
dumper_default_contentview.  What is not compared, and why (README,
"Differences from mitmdump"): mitmdump ends body lines with \\r\\n where
mitmlua ends every line with \\n (normalised here); a multipart form, which
mitmdump 8.1.1 cannot show as a form (it drops the boundary before its
multipart view runs) and prints raw; a gRPC body of several messages, which
mitmdump numbers all 0."""
import os
import subprocess

import harness as H
from harness import test, fixture

GEN = r'''
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from mitmproxy import io
from mitmproxy.test import tflow

PNG = (bytes.fromhex("89504e470d0a1a0a0000000d49484452000000100000002008060000001f15c489")
       + bytes.fromhex("00000004674d41000000b18f0bfc6105")
       + b"\x00\x00\x00\x07tEXtk\x00value\x00\x00\x00\x00"
       + b"\x00\x00\x00\x00IEND\xaeB`\x82")
GIF = (b"GIF89a\x10\x00\x20\x00\x00\x05\x00!\xfe\x05hello\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
JPEG = (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x01\x00H\x00H\x00\x00\xff\xfe\x00\x05hi!"
        b"\xff\xc0\x00\x0b\x08\x00\x20\x00\x10\x01\x01\x11\x00"
        b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00xx\xff\xd9")
ICO = (b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00\x08\x00\x00\x00\x16\x00\x00\x00"
       b"\x89PNG\r\n\x1a\n")
PB = (bytes([0x08, 0x96, 0x01, 0x12, 0x07]) + b"testing" + bytes([0x1a, 0x04, 0x08, 0x01, 0x10, 0x02])
      + bytes([0x25, 1, 0, 0, 0, 0x2a, 0x02]) + b"hi" + bytes([0x32, 0x03, 0xff, 0xfe, 0x00])
      + bytes([0x39]) + bytes(range(8)))
BODIES = [
    ("application/json", b'{"b":[1,2.5,"x\\u00e9\\n",1e20,-0,0.0001,1E-7],"a":{},"c":[],'
                         b'"d":null,"e":true,"a":3,"k\\"q":"\\u0001/","n":{"x":[{"y":[]}]}}'),
    ("application/vnd.api+json; charset=utf-8", b'[1, {"z": 0, "a": "\xc3\xa9"}]'),
    ("application/json", b'{"broken": }'),
    ("application/json", ("[" + ",".join(str(i) for i in range(100)) + "]").encode()),
    ("application/x-www-form-urlencoded", b"a=1&bb=hello+world&c=%41&&noval&e=%zz&" + b"k" * 40 + b"=1"),
    ("text/html; charset=utf-8", b"<!DOCTYPE html><html><head><title>x</title></head><body><p>hi "
                                 b"<b>there</b></p><br/>\n<div>\n  a\n  b\n</div><!-- c --><img src=x>"
                                 b"</body></html>"),
    ("text/xml", b'<?xml version="1.0"?><a x="1"><b>text</b><c/><d>\n  <e>1</e>\n</d></a>'),
    ("application/octet-stream", b"  <root><x>1</x></root>"),
    ("application/x-protobuf", PB),
    ("application/grpc", b"\x00\x00\x00\x00\x05" + bytes([0x08, 0x96, 0x01, 0x10, 0x01])),
    ("application/msgpack", bytes([0x83, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0x93, 0xc3, 0xc0, 0xcb, 0x3f, 0xf8,
                                   0, 0, 0, 0, 0, 0, 0xa2, 0x63, 0x27, 0x80])),
    ("image/png", PNG),
    ("image/gif", GIF),
    ("image/jpeg", JPEG),
    ("image/x-icon", ICO),
    ("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
    ("application/octet-stream", bytes(range(256)) * 8),
    ("text/plain", b"hello\tworld\r\nline2\x01\xff\\x\rz\n\nlast\n"),
    (None, "h\u00e9llo \u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9".encode()),
    ("text/plain", b"".join(b"line %d\n" % i for i in range(120))),
]
flows = []
for i, (ct, body) in enumerate(BODIES):
    f = tflow.tflow(resp=True)
    f.request.path = "/%d" % i
    f.response.headers.clear()
    if ct:
        f.response.headers["content-type"] = ct
    f.response.content = body
    flows.append(f)
q = tflow.tflow(resp=True)
q.request.path = "/search?q=a+b&x=%C3%A9&flag&q=2"
q.response.content = b""
flows.append(q)
post = tflow.tflow(resp=True)
post.request.method = "POST"
post.request.headers["content-type"] = "application/json"
post.request.content = b'{"user": "alice", "ids": [3, 1]}'
flows.append(post)
flows.append(tflow.twebsocketflow())
with open(sys.argv[1], "wb") as fh:
    w = io.FlowWriter(fh)
    for f in flows:
        w.add(f)
'''


@fixture
def flows_file():
    if H.IS_MITMDUMP:
        H.skip("a differential test runs both programs itself")
    H.need_mitmdump()
    path = os.path.join(H.tmpdir("cv"), "flows.mitm")
    r = subprocess.run(["/usr/bin/python3", "-c", GEN, path], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return path


def printed(binary, args):
    home = H.tmpdir("home")
    cmd = [binary, "-n"] + args
    if binary == H.BIN:
        cmd += ["--confdir", os.path.join(home, "conf")]
    r = subprocess.run(cmd, capture_output=True, timeout=60, env=dict(os.environ, HOME=home),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (cmd, r.returncode, r.stderr.decode())
    return r.stdout.decode("utf-8", "replace").replace("\r\n", "\n")


def compare(args):
    path = flows_file()
    want = printed(H.need_mitmdump(), ["-r", path] + args)
    got = printed(H.BIN, ["-r", path] + args)
    if want != got:
        wl, gl = want.splitlines(), got.splitlines()
        for i in range(max(len(wl), len(gl))):
            a = wl[i] if i < len(wl) else "<end>"
            b = gl[i] if i < len(gl) else "<end>"
            if a != b:
                ctx = "\n".join(wl[max(0, i - 8):i])
                raise AssertionError("first difference at line %d:\nmitmdump: %r\nmitmlua:  %r\nafter:\n%s"
                                     % (i + 1, a, b, ctx))
    assert "(cut off)" in got or "--flow-detail" in args and "4" in args, got


@test(timeout=120)
def detail_3_as_mitmdump_prints_it():
    compare(["--flow-detail", "3"])


@test(timeout=120)
def detail_4_as_mitmdump_prints_it():
    compare(["--flow-detail", "4"])


@test(timeout=120)
def forced_views_as_mitmdump_prints_them():
    for view in ("hex", "raw", "json"):
        compare(["--flow-detail", "3", "--set", "dumper_default_contentview=" + view])


@test
def unimplemented_and_unknown_views_are_errors():
    flows_file()
    for view, word in (("css", "not implemented"), ("bogus", "invalid value")):
        r = subprocess.run([H.BIN, "-n", "--set", "dumper_default_contentview=" + view], capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, HOME=H.tmpdir("home")))
        assert r.returncode == 2 and word in r.stderr and view in r.stderr, r


if __name__ == "__main__":
    H.main()
