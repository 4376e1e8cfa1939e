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
    p = H.Proxy(["-q", "--set", 'fail_on=~bq "(a+)+c|secret"']).start()
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
    p = H.Proxy(["-q", "-w", out, BAD_U]).start()
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


if __name__ == "__main__":
    H.main()
