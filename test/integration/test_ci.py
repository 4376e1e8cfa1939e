#!/usr/bin/python3
"""Made for CI: readiness file, --print-env, the JSONL console stream,
fail_on and mitm.exit exit statuses, the shutdown summary, and one small
CI-style job end to end."""
import json
import os
import subprocess
import time

import harness as H
from harness import test, fixture
from backend import Backend, payload


@fixture
def backend():
    return Backend().start()


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


def only_mitmlua():
    if H.Proxy().is_mitmdump:
        H.skip("mitmlua's CI features")


@test
def ready_file_with_any_port():
    only_mitmlua()
    d = H.tmpdir("ready")
    ready = os.path.join(d, "ready")
    conf = os.path.join(d, "conf")
    proc = subprocess.Popen([H.BIN, "-p", "0", "--confdir", conf, "--set", "ready_file=" + ready],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert H.wait_for(lambda: os.path.exists(ready), timeout=10), "no ready file"
        addr = open(ready).read().strip()
        host, port = addr.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0, addr
        r = H.curl(backend().url("/bytes/64"), proxy="http://" + addr)
        assert r.status == 200 and r.body == payload(64), r
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


@test
def print_env_drives_tools():
    only_mitmlua()
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    env = subprocess.run([H.BIN, "--print-env", "-p", str(p.port), "--confdir", p.confdir],
                         capture_output=True, timeout=10)
    assert env.returncode == 0, env.stderr
    text = env.stdout.decode()
    assert "export HTTPS_PROXY='http://127.0.0.1:%d'" % p.port in text, text
    assert "SSL_CERT_FILE='%s/mitmlua-ca-cert.pem'" % p.confdir in text, text
    # a tool that knows nothing of the proxy, configured only by the exports
    url = tls_backend().url("/bytes/300")
    out = subprocess.run(["bash", "-c", text + "\ncurl -sS --max-time 10 " + url],
                         capture_output=True, timeout=20)
    assert out.stdout == payload(300), out.stderr
    assert p.wait_output("GET " + url)


@test
def jsonl_console():
    only_mitmlua()
    p = H.Proxy(["--set", "console_format=jsonl"]).start()
    H.curl(backend().url("/bytes/10"), proxy=p, headers=["X-A: 1"])
    H.curl("http://127.0.0.1:%d/x" % H.free_port(), proxy=p)
    assert H.wait_for(lambda: p.stdout.count("\n") >= 2), p.stdout
    objs = [json.loads(l) for l in p.stdout.splitlines()]
    ok, bad = objs
    assert ok["method"] == "GET" and ok["url"] == backend().url("/bytes/10"), ok
    assert ok["status"] == 200 and ok["response_size"] == 10 and ok["error"] is None, ok
    assert ok["client"].startswith("127.0.0.1:") and ok["duration_ms"] >= 0, ok
    assert len(ok["id"]) == 36 and ok["timestamp_end"] >= ok["timestamp_start"], ok
    assert bad["status"] is None and "refused" in bad["error"].lower(), bad


@test
def fail_on_sets_exit_status_and_summary():
    only_mitmlua()
    p = H.Proxy(["--set", "fail_on=~s & ~c 500"]).start()
    assert H.curl(backend().url("/status/200"), proxy=p).status == 200
    assert p.stop() == 0, p.stderr            # nothing matched yet
    p = H.Proxy(["--set", "fail_on=~s & ~c 500"], expect_rc=3).start()
    assert H.curl(backend().url("/status/500"), proxy=p).status == 500
    assert H.curl(backend().url("/status/200"), proxy=p).status == 200
    assert p.stop() == 3, p.stderr
    assert "fail_on matched: GET " + backend().url("/status/500") in p.stderr, p.stderr
    assert "2 flows, 0 errors" in p.stderr and "1 matched fail_on" in p.stderr, p.stderr
    r = subprocess.run([H.BIN, "--set", "fail_on=~c abc"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"column" in r.stderr, r.stderr


@test
def mitm_exit_ends_the_run():
    only_mitmlua()
    d = H.tmpdir("exit")
    script = os.path.join(d, "verdict.lua")
    H.write(script, 'function response(f) if f.response.status_code == 418 then mitm.exit(7) end end\n')
    dump = os.path.join(d, "flows.mitmlua")
    p = H.Proxy(["-s", script, "-w", dump]).start()
    assert H.curl(backend().url("/status/418"), proxy=p).status == 418
    rc = p.wait(10)                            # it stops by itself
    assert rc == 7, (rc, p.stderr)
    r = subprocess.run([H.BIN, "-n", "-r", dump], capture_output=True, timeout=10)
    assert b"/status/418" in r.stdout, r        # the dump was flushed


@test
def every_option_is_in_the_man_page():
    only_mitmlua()
    import subprocess
    out = subprocess.run([H.BIN, "--options"], capture_output=True, text=True, timeout=20).stdout
    names = [l.split(":")[0] for l in out.splitlines() if l and not l.startswith(" ") and ":" in l]
    assert len(names) > 50, out[:500]
    with open(os.path.join(H.ROOT, "man", "mitmlua.1")) as f:
        man = f.read()
    import re
    man = re.sub(r"\\f[BIRP]", "", man)   # font changes are not part of a name
    missing = [n for n in names if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(n), man)]
    assert not missing, "options without an entry in man/mitmlua.1: %s" % missing


@test
def ci_job_end_to_end():
    """What a CI pipeline does: start, wait for readiness, run the tests
    through the printed environment, stop, keep the recording, read the
    verdict from the exit status and the JSONL stream."""
    only_mitmlua()
    d = H.tmpdir("job")
    ready, dump, log = (os.path.join(d, n) for n in ("ready", "flows.mitmlua", "flows.jsonl"))
    port = H.free_port()
    conf = os.path.join(d, "conf")
    with open(log, "wb") as out:
        proc = subprocess.Popen([H.BIN, "-p", str(port), "--confdir", conf, "-w", dump,
                                 "--set", "console_format=jsonl", "--set", "ready_file=" + ready,
                                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert,
                                 "--set", "fail_on=~s & ~c 500"],
                                stdout=out, stderr=subprocess.PIPE)
        assert H.wait_for(lambda: os.path.exists(ready), timeout=10)
        env = subprocess.run([H.BIN, "--print-env", "-p", str(port), "--confdir", conf],
                             capture_output=True, timeout=10).stdout.decode()
        urls = [tls_backend().url("/bytes/50"), backend().url("/echo"), tls_backend().url("/status/500")]
        for u in urls:
            subprocess.run(["bash", "-c", env + "\ncurl -sS -o /dev/null --max-time 10 " + u], timeout=20)
        time.sleep(0.3)
        proc.terminate()
        rc = proc.wait(10)
        err = proc.stderr.read().decode()
    assert rc == 3, (rc, err)                           # a 500 was seen
    flows = [json.loads(l) for l in open(log)]
    assert [f["url"] for f in flows] == urls, flows
    assert [f["status"] for f in flows] == [200, 200, 500]
    r = subprocess.run([H.BIN, "-n", "-r", dump, "~c", "500"], capture_output=True, timeout=10)
    assert r.stdout.decode().count(" GET ") == 1 and "/status/500" in r.stdout.decode(), r
    assert "3 flows" in err, err


if __name__ == "__main__":
    H.main()
