#!/usr/bin/python3
"""Client replay (-C FILE): traffic recorded against a "production" backend
is replayed to a "staging" backend (with -M, and with a dump retargeted by
a Lua script on -r), checked byte for byte against what production
received; client_replay_compare with a staging that differs on purpose;
concurrency and connection reuse; a staging that is down; replay beside
live traffic without -n; hooks and -w on replayed flows; bad files."""
import base64
import gzip
import json
import os
import subprocess

import harness as H
from harness import test
from backend import Backend, Handler, payload
from replay_util import need_mitmlua, record, dead_port_backend


class StagingHandler(Handler):
    """Staging differs from production on purpose: /status/* answers 503,
    /headers adds X-Staging: 1, /bytes/N flips one byte in the middle."""

    def dispatch(self):
        if self.path.startswith("/status/"):
            self.path = "/status/503"
        elif self.path.startswith("/headers"):
            self.path += "&X-Staging=1"
        elif self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            data = bytearray(payload(n))
            data[n // 2] ^= 1
            with self.server.log_lock:
                self.server.log.append({"method": self.command, "path": self.path,
                                        "headers": [[k, v] for k, v in self.headers.items()],
                                        "client": list(self.client_address[:2])})
            return self.send(200, bytes(data))
        return super().dispatch()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = dispatch


def staging_backend():
    b = Backend()
    b.server.RequestHandlerClass = StagingHandler
    return b.start()


def run(*args, timeout=60):
    return subprocess.run([H.BIN] + [str(a) for a in args], capture_output=True, timeout=timeout)


def retarget(dump, port):
    """The dump itself with every request pointed at 127.0.0.1:port (a
    request hook on -r), for the tests that replay without -M."""
    d = H.tmpdir("retarget")
    lua = H.write(os.path.join(d, "retarget.lua"),
                  "function request(flow)\n  flow.request.host = '127.0.0.1'\n"
                  "  flow.request.port = %d\nend\n" % port)
    out = os.path.join(d, "staging.mitmlua")
    r = run("-q", "-n", "-r", dump, "-s", lua, "-w", out)
    assert r.returncode == 0, r.stderr
    return out


def replay(dump, *args, timeout=60):
    conf = os.path.join(H.tmpdir("conf"), "confdir")
    return run("--confdir", conf, "-n", "-C", dump, *args, timeout=timeout)


def without_host(headers):
    return [h for h in headers if h[0].lower() != "host"]


@test
def client_replay_to_staging_byte_for_byte():
    need_mitmlua()
    prod, staging = Backend().start(), Backend().start()
    gz = gzip.compress(b'{"compressed": "request body"}')
    reqs = [
        {"path": "/echo?b=2&a=1&a=0", "headers": ["X-Zed: last", "X-Alpha: first", "Cookie: s=1"]},
        {"path": "/echo/gz", "method": "POST", "data": gz,
         "headers": ["Content-Encoding: gzip", "Content-Type: application/json"]},
        {"path": "/echo/put", "method": "PUT", "data": bytes(range(256)) * 4},
        {"path": "/echo/del", "method": "DELETE"},
    ]
    dump, rec = record(reqs, prod)
    sdump = retarget(dump, staging.port)
    # the echo differs only in the client's address and the Host header
    # (headers.0: the first header received) that retargeting rewrote
    r = replay(sdump, "--set", "client_replay_compare=body",
               "--set", "client_replay_ignore_json_fields=client",
               "--set", "client_replay_ignore_json_fields=headers.0.1")
    err = r.stderr.decode()
    # the echoed request line, headers in order and body are production's
    assert r.returncode == 0, err
    assert "client replay: 4 replayed, 0 differ, 0 failed" in err, err
    got, want = staging.log, prod.log
    assert len(got) == 4, got
    for g, w in zip(got, want):
        assert g["request_line"] == w["request_line"], (g, w)
        assert without_host(g["headers"]) == without_host(w["headers"]), (g, w)
        assert H.header(g["headers"], "host") == "127.0.0.1:%d" % staging.port, g
    # the gzip body went out still compressed, as recorded
    assert json.loads(rec[1].body)["body"] == base64.b64encode(gz).decode()
    # the console shows the replayed flows
    assert r.stdout.decode().count("[replay]") == 4, r.stdout


@test
def client_replay_compare_modes():
    need_mitmlua()
    prod, staging = Backend().start(), staging_backend()
    dump, _ = record([{"path": "/status/200"}, {"path": "/headers?X-A=1"}, {"path": "/bytes/100"}], prod)
    sdump = retarget(dump, staging.port)
    expect = {"status": 1, "headers": 2, "body": 3}
    for mode, n in expect.items():
        r = replay(sdump, "--set", "client_replay_compare=" + mode)
        err = r.stderr.decode()
        assert r.returncode == 4, (mode, err)
        assert "client replay: 3 replayed, %d differ, 0 failed" % n in err, (mode, err)
        assert "status: 200 -> 503" in err, err
        assert ("header x-staging: (missing) -> '1'" in err) == (mode != "status"), (mode, err)
        assert ("body: 100 bytes -> 100 bytes, first difference at byte 50" in err) == (mode == "body"), err
        assert "GET http://127.0.0.1:%d/status/200" % staging.port in err, err
    # leave out the expected difference; the filter selects the flow to replay
    r = replay(sdump, "--set", "client_replay_compare=body", "--set",
               "client_replay_ignore_headers=X-Staging", "~u", "headers")
    err = r.stderr.decode()
    assert r.returncode == 0 and "client replay: 1 replayed, 0 differ, 0 failed" in err, err
    # no compare: differences do not change the exit status
    r = replay(sdump)
    assert r.returncode == 0 and "client replay: 3 replayed, 0 differ, 0 failed" in r.stderr.decode(), r.stderr


@test
def client_replay_order_concurrency_and_pooling():
    need_mitmlua()
    prod, staging = Backend().start(), Backend().start()
    paths = ["/slow/0.3?i=%d" % i for i in range(6)]
    dump, _ = record([{"path": p} for p in paths], prod)
    sdump = retarget(dump, staging.port)
    r = replay(sdump, "--set", "client_replay_compare=status")
    assert r.returncode == 0, r.stderr
    log = staging.log
    # one at a time, in recorded order, over one kept-alive connection
    assert [e["path"] for e in log] == paths, log
    assert len({tuple(e["client"]) for e in log}) == 1, log
    staging.clear()
    r = replay(sdump, "--set", "client_replay_compare=status", "--set", "client_replay_concurrency=3")
    assert r.returncode == 0, r.stderr
    log = staging.log
    assert sorted(e["path"] for e in log) == sorted(paths), log
    conns = {tuple(e["client"]) for e in log}
    # three lanes: three connections at once, each reused
    assert len(conns) == 3, log
    assert "6 replayed, 0 differ, 0 failed" in r.stderr.decode()


@test
def client_replay_staging_down():
    need_mitmlua()
    prod = Backend().start()
    dump, _ = record([{"path": "/bytes/10"}, {"path": "/bytes/20"}], prod)
    sdump = retarget(dump, dead_port_backend().port)
    out = os.path.join(H.tmpdir("out"), "out.mitmlua")
    r = replay(sdump, "--set", "client_replay_compare=status", "-w", out, "--set", "connect_timeout=5")
    err = r.stderr.decode()
    assert r.returncode == 4, err
    assert "client replay: 2 replayed, 0 differ, 2 failed" in err, err
    assert err.count("  error: ") == 2, err
    # the error flows are in the dump, marked as replays
    rr = run("-n", "-r", out, "~replayq", "&", "~e")
    assert rr.stdout.decode().count("/bytes/") == 2, rr.stdout
    r = replay(sdump)
    assert r.returncode == 0 and "2 failed" in r.stderr.decode(), r.stderr


@test
def client_replay_beside_live_traffic_with_hooks():
    need_mitmlua()
    prod, staging = Backend().start(), Backend().start()
    dump, _ = record([{"path": "/echo/one"}, {"path": "/echo/two"}], prod)
    sdump = retarget(dump, staging.port)
    d = H.tmpdir("hook")
    lua = H.write(os.path.join(d, "hook.lua"),
                  "function request(flow)\n"
                  "  if flow.is_replay == 'request' then flow.request.headers['X-Replayed'] = 'yes' end\n"
                  "end\n")
    out = os.path.join(d, "out.mitmlua")
    # keepserving: without it, as in mitmdump, the run ends with the replay
    p = H.Proxy(["-C", sdump, "-s", lua, "-w", out, "--set", "keepserving=true"], label="replay").start()
    assert H.wait_for(lambda: len(staging.log) == 2, timeout=20), staging.log
    assert all(H.header(e["headers"], "x-replayed") == "yes" for e in staging.log), staging.log
    # the server has both requests; the proxy may still be reading the
    # second answer: wait for both flows on its console before stopping
    assert H.wait_for(lambda: H.read(p.out_path).count("<< 200") >= 2, timeout=20), H.read(p.out_path)
    r = H.curl(prod.url("/echo/live"), proxy=p)
    assert r.status == 200 and H.header(json.loads(r.body)["headers"], "x-replayed") is None, r
    assert p.stop() == 0, p.stderr
    rr = run("-n", "-r", out, "~replayq")
    assert rr.stdout.decode().count("/echo/") == 2, rr.stdout
    rr = run("-n", "-r", out, "!", "~replay")
    assert "/echo/live" in rr.stdout.decode(), rr.stdout


@test
def client_replay_interrupted():
    need_mitmlua()
    prod, staging = Backend().start(), Backend().start()
    dump, _ = record([{"path": "/slow/5"}, {"path": "/slow/5"}], prod)
    sdump = retarget(dump, staging.port)
    p = H.Proxy(["-C", sdump], label="replay").start()
    assert H.wait_for(lambda: staging.log, timeout=20), "the replay never started"
    # stopped with the first request in flight: a clean exit (no crash, and
    # under ASan no leaked connection), and the summary says so
    assert p.stop() == 0, p.stderr
    assert "client replay: 0 replayed, 0 differ, 0 failed, 2 not replayed (interrupted)" in p.stderr, p.stderr


@test
def client_replay_bad_files():
    need_mitmlua()
    d = H.tmpdir("bad")
    r = replay(os.path.join(d, "missing.mitmlua"))
    err = r.stderr.decode()
    assert r.returncode == 1 and "missing.mitmlua" in err and len(err.strip().splitlines()) == 1, err
    r = replay(H.write(os.path.join(d, "junk"), b"\x00junk" * 20, "wb"))
    assert r.returncode == 1 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    r = replay(os.path.join(d, "missing.mitmlua"), "--set", "client_replay_compare=everything")
    assert r.returncode == 2 and "client_replay_compare" in r.stderr.decode(), r.stderr


@test
def client_replay_with_map_remote():
    need_mitmlua()
    prod, staging = Backend().start(), Backend().start()
    dump, _ = record([{"path": "/echo?x=1"}, {"path": "/echo/two"}], prod)
    rule = "|127.0.0.1:%d|127.0.0.1:%d" % (prod.port, staging.port)
    r = replay(dump, "-M", rule, "--set", "client_replay_compare=status")
    assert r.returncode == 0, r.stderr
    assert [e["path"] for e in staging.log] == ["/echo?x=1", "/echo/two"], staging.log
    assert all(H.header(e["headers"], "host") == "127.0.0.1:%d" % staging.port
               for e in staging.log), staging.log
    assert prod.paths() == ["/echo?x=1", "/echo/two"], prod.paths()

if __name__ == "__main__":
    H.main()
