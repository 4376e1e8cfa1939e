#!/usr/bin/python3
"""Server replay (-S FILE): traffic recorded from a real backend with -w is
served back with the backend stopped, for http and for https through
CONNECT; the matching options (ignore_params, ignore_content,
ignore_payload_params, ignore_host, ignore_port, use_headers), the order in
which responses for one request are served (pop, nopop/reuse), what
happens to requests with no recorded answer (server_replay_extra=forward,
kill, 404; server_replay_kill_extra), a 100,000-flow HAR, and bad files."""
import json
import os
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend, payload
from replay_util import need_mitmlua, record, dead_port_backend


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


def replay_proxy(dump, *opts):
    return H.Proxy(["-S", dump] + [a for o in opts for a in ("--set", o)], label="replay").start()


@test
def http_served_with_backend_stopped():
    need_mitmlua()
    b = Backend().start()
    reqs = [{"path": "/bytes/1000"}, {"path": "/echo?a=1&b=2"},
            {"path": "/echo", "data": b"post body", "method": "POST"},
            {"path": "/gzip", "headers": ["Accept-Encoding: gzip"]},
            {"path": "/status/404"}]
    dump, rec = record(reqs, b)
    b.stop()
    p = replay_proxy(dump)
    for req, want in zip(reqs, rec):
        req = dict(req)
        r = H.curl(b.url(req.pop("path")), proxy=p, **req)
        assert r.status == want.status and r.body == want.body, (r, want)
        assert H.header(r.headers, "content-type") == H.header(want.headers, "content-type"), r
    assert rec[0].body == payload(1000)
    # the gzip body is served as recorded, still compressed
    assert H.header(rec[3].headers, "content-encoding") == "gzip"
    p.wait_output("[replay]")
    # a request that was never recorded goes upstream (forward), which is down
    r = H.curl(b.url("/bytes/7"), proxy=p)
    assert r.status == 502, r
    assert p.stop() == 0, p.stderr
    assert "5 recorded responses loaded" in p.stderr, p.stderr


@test
def replayed_flows_are_marked_in_the_dump():
    need_mitmlua()
    b = Backend().start()
    dump, _ = record([{"path": "/bytes/10"}], b)
    b.stop()
    out = os.path.join(H.tmpdir("out"), "out.mitmlua")
    p = H.Proxy(["-S", dump, "-w", out], label="replay").start()
    assert H.curl(b.url("/bytes/10"), proxy=p).status == 200
    assert H.curl(b.url("/bytes/11"), proxy=p).status == 502
    assert p.stop() == 0
    r = subprocess.run([H.BIN, "-n", "-r", out, "~replays"], capture_output=True, timeout=30)
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    assert len(lines) == 2 and "/bytes/10" in lines[0], lines


@test
def https_through_connect_served_with_backend_stopped():
    need_mitmlua()
    pk = pki()
    b = Backend(tls=(pk.cert, pk.key)).start()
    conf = os.path.join(H.tmpdir("conf"), "confdir")
    path = os.path.join(H.tmpdir("rec"), "tls.mitmlua")
    p = H.Proxy(["-w", path, "--set", "ssl_verify_upstream_trusted_ca=" + pk.ca_cert],
                confdir=conf, label="rec").start()
    want = H.curl(b.url("/echo?tls=1", host="localhost"), proxy=p, cacert=p.ca())
    assert want.status == 200, want
    assert p.stop() == 0
    b.stop()
    p = H.Proxy(["-S", path], confdir=conf, label="replay").start()
    r = H.curl(b.url("/echo?tls=1", host="localhost"), proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.status == 200 and r.body == want.body, r
    assert json.loads(r.body)["path"] == "/echo?tls=1"
    # the same request over plain http is another key (scheme): forwarded, fails
    r = H.curl(b.url("/echo?tls=1", scheme="http", host="localhost"), proxy=p)
    assert r.status == 502, r
    assert p.stop() == 0


@test
def responses_for_one_request_are_served_in_order_then_extra():
    need_mitmlua()
    b = Backend().start()
    # /echo reports the client's port: each recording differs
    dump, rec = record([{"path": "/echo"}, {"path": "/echo"}], b)
    assert rec[0].body != rec[1].body
    b.stop()
    p = replay_proxy(dump, "server_replay_extra=404")
    got = [H.curl(b.url("/echo"), proxy=p) for _ in range(3)]
    assert [g.body for g in got[:2]] == [rec[0].body, rec[1].body], got
    assert got[2].status == 404, got[2]
    assert p.stop() == 0
    for opt in ("server_replay_nopop=true", "server_replay_reuse=true"):
        p = replay_proxy(dump, opt, "server_replay_extra=404")
        got = [H.curl(b.url("/echo"), proxy=p) for _ in range(3)]
        assert all(g.status == 200 and g.body == rec[0].body for g in got), (opt, got)
        assert p.stop() == 0


def hit(p, url, **kw):
    r = H.curl(url, proxy=p, **kw)
    assert r.status in (200, 404), r
    return r.status == 200


@test(timeout=120)
def matching_options():
    need_mitmlua()
    b = Backend().start()
    form = "application/x-www-form-urlencoded"
    dump, _ = record([
        {"path": "/echo?q=1&ts=100"},
        {"path": "/echo/post", "method": "POST", "data": b"a=1&nonce=5",
         "headers": ["Content-Type: " + form]},
        {"path": "/echo/user", "headers": ["X-User: alice"]},
    ], b)
    b.stop()
    other_port = H.free_port()
    base = "server_replay_extra=404"
    cases = [
        # (options, url, curl kwargs, served without the options?, with them?)
        (["server_replay_ignore_params=ts"], b.url("/echo?q=1&ts=999"), {}, False, True),
        (["server_replay_ignore_params=ts"], b.url("/echo?q=2&ts=100"), {}, False, False),
        (["server_replay_ignore_content=true"], b.url("/echo/post"),
         {"method": "POST", "data": b"something else", "headers": ["Content-Type: " + form]}, False, True),
        (["server_replay_ignore_payload_params=nonce"], b.url("/echo/post"),
         {"method": "POST", "data": b"a=1&nonce=6", "headers": ["Content-Type: " + form]}, False, True),
        (["server_replay_ignore_payload_params=nonce"], b.url("/echo/post"),
         {"method": "POST", "data": b"a=2&nonce=5", "headers": ["Content-Type: " + form]}, False, False),
        (["server_replay_ignore_host=true"], b.url("/echo/user", host="localhost"),
         {"headers": ["X-User: alice"]}, False, True),
        (["server_replay_ignore_port=true"], "http://127.0.0.1:%d/echo/user" % other_port,
         {"headers": ["X-User: alice"]}, False, True),
        (["server_replay_use_headers=X-User"], b.url("/echo/user"), {"headers": ["X-User: bob"]}, True, False),
        (["server_replay_use_headers=X-User"], b.url("/echo/user"), {"headers": ["X-User: alice"]}, True, True),
        # query parameters compare decoded: %31 is 1
        ([], b.url("/echo?q=%31&ts=100"), {}, True, True),
    ]
    # one proxy without options answers every case; one per option set
    p = replay_proxy(dump, base, "server_replay_nopop=true")
    for opts, url, kw, without, _ in cases:
        assert hit(p, url, **kw) == without, ("without", opts, url, kw)
    p.stop()
    for optset in sorted({tuple(c[0]) for c in cases if c[0]}):
        p = replay_proxy(dump, base, "server_replay_nopop=true", *optset)
        for opts, url, kw, _, with_ in cases:
            if tuple(opts) == optset:
                assert hit(p, url, **kw) == with_, ("with", opts, url, kw)
        p.stop()


@test
def extra_forward_kill_and_status():
    need_mitmlua()
    b = Backend().start()
    dump, _ = record([{"path": "/bytes/5"}], b)
    b.clear()
    # forward (the default): the unmatched request reaches the live backend
    p = replay_proxy(dump, "server_replay_extra=forward")
    assert H.curl(b.url("/bytes/6"), proxy=p).body == payload(6)
    assert H.curl(b.url("/bytes/5"), proxy=p).body == payload(5)
    p.stop()
    assert b.paths() == ["/bytes/6"], b.paths()
    b.clear()
    for opts in (["server_replay_extra=kill"], ["server_replay_kill_extra=true"]):
        p = replay_proxy(dump, *opts)
        r = H.curl(b.url("/bytes/6"), proxy=p)
        assert r.status is None and r.rc != 0, r
        # still killed once every recorded response is used up
        assert H.curl(b.url("/bytes/5"), proxy=p).body == payload(5)
        r = H.curl(b.url("/bytes/5"), proxy=p)
        assert r.status is None and r.rc != 0, r
        p.stop()
        assert "killed a request with no recorded response" in p.stderr, p.stderr
    for code in (204, 404, 500):
        p = replay_proxy(dump, "server_replay_extra=%d" % code)
        r = H.curl(b.url("/bytes/6"), proxy=p)
        assert r.status == code and r.body == b"", r
        p.stop()
    assert b.paths() == [], b.paths()


def har_entry(url, status=200, headers=(), text="", when="2024-01-01T00:00:00.000Z"):
    return {"startedDateTime": when, "time": 1,
            "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1", "headers": [],
                        "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
            "response": {"status": status, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [{"name": k, "value": v} for k, v in headers],
                         "cookies": [], "content": {"size": len(text), "mimeType": "text/plain",
                                                    "text": text},
                         "redirectURL": "", "headersSize": -1, "bodySize": -1},
            "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}}


def write_har(path, entries):
    with open(path, "w") as fp:
        json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                           "entries": entries}}, fp)
    return path


@test
def refresh_shifts_dates():
    need_mitmlua()
    from email.utils import parsedate_to_datetime
    # recorded on 2024-01-01: Date then, Expires an hour later
    date, expires = "Mon, 01 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 01:00:00 GMT"
    har = write_har(os.path.join(H.tmpdir("har"), "dated.har"),
                    [har_entry("http://dated.test/", headers=[("Date", date), ("Expires", expires),
                                                               ("Last-Modified", "yesterday")])])
    p = replay_proxy(har, "server_replay_nopop=true")
    r = H.curl("http://dated.test/", proxy=p)
    p.stop()
    d, e = H.header(r.headers, "date"), H.header(r.headers, "expires")
    assert r.status == 200 and d != date, r
    # moved by the same amount: still an hour apart, and no longer in 2024
    assert (parsedate_to_datetime(e) - parsedate_to_datetime(d)).total_seconds() == 3600, r
    assert parsedate_to_datetime(d).year > 2024, r
    assert H.header(r.headers, "last-modified") == "yesterday", r   # not a date: as recorded
    p = replay_proxy(har, "server_replay_refresh=false")
    r = H.curl("http://dated.test/", proxy=p)
    p.stop()
    assert H.header(r.headers, "date") == date and H.header(r.headers, "expires") == expires, r


@test(timeout=60)
def workers_share_the_index():
    need_mitmlua()
    # 40 recorded responses for one request, consumed by 40 concurrent
    # clients on two workers: each served exactly once, then 404
    har = write_har(os.path.join(H.tmpdir("har"), "shared.har"),
                    [har_entry("http://shared.test/n", text="r%d" % i) for i in range(40)])
    p = replay_proxy(har, "workers=2", "server_replay_extra=404")
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda _: H.curl("http://shared.test/n", proxy=p), range(40)))
    assert all(g.status == 200 for g in got), [g for g in got if g.status != 200][:3]
    assert sorted(g.body for g in got) == sorted(b"r%d" % i for i in range(40)), got
    assert H.curl("http://shared.test/n", proxy=p).status == 404
    assert p.stop() == 0


def big_har(path, n):
    write_har(path, [har_entry("http://big.test/item/%d?v=%d" % (i, i), text="item %d" % i)
                     for i in range(n)])


@test(timeout=180)
def hundred_thousand_flows_load_and_serve():
    need_mitmlua()
    path = os.path.join(H.tmpdir("big"), "big.har")
    big_har(path, 100000)
    p = H.Proxy(["-S", path, "--set", "server_replay_extra=404"], label="replay").start(timeout=120)
    for i in (0, 1, 50000, 99999):
        r = H.curl("http://big.test/item/%d?v=%d" % (i, i), proxy=p)
        assert r.status == 200 and r.body == b"item %d" % i, r
    assert H.curl("http://big.test/item/100000?v=100000", proxy=p).status == 404
    assert H.curl("http://big.test/item/5?v=6", proxy=p).status == 404
    # freeing 100,000 responses is slow under ASan: a generous bound
    assert p.stop(timeout=120) == 0
    assert "100000 recorded responses loaded" in p.stderr, p.stderr


def start_fails(args):
    port = H.free_port()
    conf = os.path.join(H.tmpdir("conf"), "confdir")
    r = subprocess.run([H.BIN, "-p", str(port), "--confdir", conf] + args,
                       capture_output=True, timeout=30)
    return r.returncode, r.stderr.decode()


@test
def bad_files_and_options():
    need_mitmlua()
    d = H.tmpdir("bad")
    rc, err = start_fails(["-S", os.path.join(d, "missing.mitmlua")])
    assert rc == 1 and "missing.mitmlua" in err and len(err.strip().splitlines()) == 1, (rc, err)
    garbage = os.path.join(d, "garbage.bin")
    H.write(garbage, b"\x00\x01not a flow file at all" * 10, "wb")
    rc, err = start_fails(["-S", garbage])
    assert rc == 1 and "garbage.bin" in err and len(err.strip().splitlines()) == 1, (rc, err)
    # a dump damaged in its middle: refused as a whole
    b = Backend().start()
    dump, _ = record([{"path": "/bytes/%d" % (3000 + i)} for i in range(5)], b)
    b.stop()
    data = bytearray(H.read(dump, "rb"))
    data[len(data) // 2] ^= 0xFF
    damaged = os.path.join(d, "damaged.mitmlua")
    H.write(damaged, bytes(data), "wb")
    rc, err = start_fails(["-S", damaged])
    assert rc == 1 and "damaged.mitmlua" in err and len(err.strip().splitlines()) == 1, (rc, err)
    rc, err = start_fails(["-S", dump, "--set", "server_replay_extra=teapot"])
    assert rc == 2 and "server_replay_extra" in err, (rc, err)

if __name__ == "__main__":
    H.main()
