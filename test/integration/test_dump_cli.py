#!/usr/bin/python3
"""Recording and reading back through the command line: -w FILE, -w +FILE,
-w -, -r FILE, -r -, -n -r ... -w OUT [filter], hardump, damaged files,
kill -9 while recording, hooks on read flows, mitm.export_curl."""
import json
import os
import signal
import subprocess
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload


@fixture
def backend():
    return Backend().start()


def run(*args, stdin=None, timeout=30):
    if H.Proxy().is_mitmdump:
        H.skip("mitmlua's dump format")
    return subprocess.run([H.BIN] + [str(a) for a in args], input=stdin,
                          capture_output=True, timeout=timeout)


def lines(out):
    return [l for l in out.decode().splitlines() if l.strip()]


def record(path, n=3, extra=()):
    """n good flows and one failed one, recorded with -w path."""
    p = H.Proxy(["-w", path] + list(extra), label="rec").start()
    for i in range(n):
        r = H.curl(backend().url("/bytes/%d" % (100 + i)), proxy=p)
        assert r.status == 200, r
    r = H.curl("http://127.0.0.1:%d/nothing" % H.free_port(), proxy=p)
    assert r.status == 502, r
    assert p.stop() == 0, p.stderr
    return p


@test
def write_then_read_with_filter():
    path = os.path.join(H.tmpdir("d"), "flows.mitmlua")
    record(path)
    r = run("-n", "-r", path)
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)
    assert sum(" GET http://" in l for l in out) == 4, out
    assert sum("<< 200 OK" in l for l in out) == 3, out
    r = run("-n", "-r", path, "~e")
    out = lines(r.stdout)
    assert len(out) == 2 and "/nothing" in out[0], out
    r = run("-n", "-r", path, "~u", "bytes/101")
    assert len(lines(r.stdout)) == 2, r.stdout


@test
def append_and_convert():
    d = H.tmpdir("d")
    path = os.path.join(d, "flows.mitmlua")
    record(path, n=2)
    record("+" + path, n=1)
    r = run("-n", "-q", "-r", path, "--set", "flow_detail=1")
    assert len([l for l in lines(r.stdout) if " GET " in l]) == 5, r.stdout
    out = os.path.join(d, "ok-only.mitmlua")
    r = run("-n", "-r", path, "-w", out, "~s")
    assert r.returncode == 0, r.stderr
    r = run("-n", "-r", out)
    assert len([l for l in lines(r.stdout) if " GET " in l]) == 3, r.stdout


@test
def pipes_stdout_and_stdin():
    d = H.tmpdir("d")
    path = os.path.join(d, "flows.mitmlua")
    record(path, n=2)
    r = run("-n", "-r", path, "-w", "-")
    assert r.returncode == 0 and r.stdout[:7] == b"MITMLUA", r.stdout[:16]
    assert " GET " in r.stderr.decode(), r.stderr     # console moved to stderr
    r2 = run("-n", "-r", "-", stdin=r.stdout)
    assert r2.returncode == 0, r2.stderr
    assert len([l for l in lines(r2.stdout) if " GET " in l]) == 3, r2.stdout


@test
def hardump_has_har_fields():
    d = H.tmpdir("d")
    path = os.path.join(d, "flows.mitmlua")
    record(path, n=2)
    har = os.path.join(d, "flows.har")
    r = run("-n", "-q", "-r", path, "--set", "hardump=" + har)
    assert r.returncode == 0, r.stderr
    doc = json.load(open(har))
    entries = doc["log"]["entries"]
    assert doc["log"]["version"] == "1.2" and len(entries) == 3, doc["log"].keys()
    for e in entries:
        for k in ("startedDateTime", "time", "request", "response", "cache", "timings"):
            assert k in e, (k, e.keys())
    assert entries[0]["response"]["status"] == 200
    assert entries[0]["response"]["content"]["size"] == 100
    # and HAR reads back
    r = run("-n", "-r", har)
    assert r.returncode == 0 and len([l for l in lines(r.stdout) if " GET " in l]) == 3, r


@test
def damaged_file_reports_and_keeps_good_flows():
    d = H.tmpdir("d")
    path = os.path.join(d, "flows.mitmlua")
    record(path, n=3)
    data = open(path, "rb").read()
    cut = os.path.join(d, "cut.mitmlua")
    open(cut, "wb").write(data[:len(data) - 7])
    r = run("-n", "-r", cut)
    assert r.returncode != 0, r
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "cut.mitmlua" in err[0], err
    assert len([l for l in lines(r.stdout) if "<< 200 OK" in l]) == 3, r.stdout
    junk = os.path.join(d, "junk")
    open(junk, "wb").write(b"this is not a flow file\n" * 10)
    r = run("-n", "-r", junk)
    assert r.returncode != 0 and r.stdout == b"", r
    assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr


@test
def kill_9_keeps_finished_flows():
    path = os.path.join(H.tmpdir("d"), "flows.mitmlua")
    p = H.Proxy(["-w", path], label="rec").start()
    for i in range(5):
        assert H.curl(backend().url("/bytes/%d" % (10 + i)), proxy=p).status == 200
    time.sleep(0.3)   # the writer flushes within 100 ms of a flow finishing
    p.stop(signal.SIGKILL, timeout=5)
    r = run("-n", "-r", path)
    assert len([l for l in lines(r.stdout) if "<< 200 OK" in l]) == 5, (r.stdout, r.stderr)


@test
def hooks_run_on_read_flows_and_export_curl():
    d = H.tmpdir("d")
    path = os.path.join(d, "flows.mitmlua")
    record(path, n=1)
    script = os.path.join(d, "s.lua")
    curlfile = os.path.join(d, "cmd.sh")
    H.write(script, """
local n = 0
function response(f)
  n = n + 1
  local fh = io.open(%s, "w"); fh:write(mitm.export_curl(f), "\\n"); fh:close()
end
function done() mitm.log.info("responses seen: " .. n) end
""" % H.lua_quote(curlfile))
    r = run("-n", "-q", "-r", path, "-s", script, "--set", "termlog_verbosity=info")
    assert r.returncode == 0, r.stderr
    assert "responses seen: 1" in r.stderr.decode(), r.stderr
    cmd = open(curlfile).read()
    assert cmd.startswith("curl "), cmd
    out = subprocess.run(["bash", "-c", cmd + " -sS --noproxy '*'"], capture_output=True, timeout=20)
    assert out.stdout == payload(100), (cmd, out.stderr)


if __name__ == "__main__":
    H.main()
