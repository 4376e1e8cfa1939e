#!/usr/bin/python3
"""ignore_hosts / allow_hosts: matching CONNECT targets are not intercepted;
their TLS stays end to end (the client sees the server's own certificate).
As in mitmproxy, no flow is kept of such a connection unless
show_ignored_hosts is on: then it is a TCP flow of its (TLS) bytes."""
import json
import os
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend, payload


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
        H.skip("output format checks are mitmlua's")


@test
def ignored_host_keeps_its_own_certificate():
    only_mitmlua()
    b = tls_backend()
    dump = os.path.join(H.tmpdir("pt"), "flows.mitmlua")
    port = b.url("/").split(":")[2].split("/")[0]
    p = H.Proxy(["--set", r"ignore_hosts=^127\.0\.0\.1:%s$" % port, "-w", dump]).start()
    # trusting only the backend's own CA works: nothing was minted
    r = H.curl(b.url("/bytes/2000"), proxy=p, cacert=pki().ca_cert)
    assert r.rc == 0 and r.body == payload(2000), r
    # and trusting only mitmlua's CA does not
    r = H.curl(b.url("/bytes/10"), proxy=p, cacert=p.ca())
    assert r.rc != 0, r
    assert p.stop() == 0
    # show_ignored_hosts is off by default: no flow of them (mitmproxy's)
    out = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "console_format=jsonl"], capture_output=True, timeout=10)
    assert out.returncode == 0 and out.stdout == b"", out


@test
def show_ignored_hosts_records_them_as_tcp_flows():
    only_mitmlua()
    b = tls_backend()
    d = H.tmpdir("pt")
    dump = os.path.join(d, "flows.mitmlua")
    log = os.path.join(d, "ev.log")
    script = os.path.join(d, "ev.lua")
    H.write(script, 'local function say(s) local f = io.open(%r, "a"); f:write(s, "\\n"); f:close() end\n'
                    'function tcp_start(flow) say("start") end\n'
                    'function tcp_message(flow) say("message") end\n'
                    'function tcp_end(flow) say("end " .. #flow.messages) end\n' % log)
    port = b.url("/").split(":")[2].split("/")[0]
    p = H.Proxy(["--set", r"ignore_hosts=^127\.0\.0\.1:%s$" % port, "--set", "show_ignored_hosts=true",
                 "-s", script, "-w", dump]).start()
    r = H.curl(b.url("/bytes/2000"), proxy=p, cacert=pki().ca_cert)
    assert r.rc == 0 and r.body == payload(2000), r
    assert H.wait_for(lambda: os.path.exists(log) and "end" in H.read(log), timeout=10)
    assert p.stop() == 0
    ev = H.read(log).splitlines()
    assert ev[0] == "start" and ev[-1].startswith("end ") and ev.count("message") >= 4, ev
    out = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "console_format=jsonl", "~tcp"],
                         capture_output=True, timeout=10)
    flows = [json.loads(l) for l in out.stdout.decode().splitlines()]
    assert len(flows) == 1 and flows[0]["type"] == "tcp", flows
    assert flows[0]["server"] == "127.0.0.1:" + port and flows[0]["error"] is None, flows[0]
    # its messages are the TLS records as they went by: a ClientHello first
    shown = subprocess.run([H.BIN, "-n", "-r", dump, "--set", "flow_detail=3"], capture_output=True, timeout=10)
    first = shown.stdout.decode().split("-> tcp ->", 1)[1]
    assert "0000000000 16 03" in first, shown.stdout[:600]


@test
def allow_hosts_intercepts_only_those():
    only_mitmlua()
    b = tls_backend()
    port = b.url("/").split(":")[2].split("/")[0]
    p = H.Proxy(["--set", r"allow_hosts=^localhost:",
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    # localhost is intercepted: mitmlua's CA is what the client must trust
    r = H.curl("https://localhost:%s/bytes/5" % port, proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.body == payload(5), r
    assert p.wait_output("GET https://localhost:%s/bytes/5" % port)
    # 127.0.0.1 is not: the backend's own certificate comes through
    r = H.curl(b.url("/bytes/7"), proxy=p, cacert=pki().ca_cert)
    assert r.rc == 0 and r.body == payload(7), r


@test
def passthrough_to_nothing_is_502():
    only_mitmlua()
    port = H.free_port()
    p = H.Proxy(["--set", "ignore_hosts=.*"]).start()
    data, _ = H.raw("127.0.0.1", p.port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
    assert H.status_of(data) == 502, data


@test
def ignored_host_through_an_upstream_proxy():
    # upstream mode: the untouched tunnel is opened with CONNECT through the
    # upstream proxy (mitmdump, the reference),
    # which intercepts it itself: only its CA makes the client happy
    only_mitmlua()
    b = tls_backend()
    port = b.url("/").split(":")[2].split("/")[0]
    up = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert],
                 binary=H.need_mitmdump(), label="upstream").start()
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % up.port,
                 "--set", r"ignore_hosts=^127\.0\.0\.1:%s$" % port]).start()
    r = H.curl(b.url("/bytes/300"), proxy=p, cacert=up.ca())
    assert r.rc == 0 and r.body == payload(300), r
    assert up.wait_output("/bytes/300"), up.stdout
    r = H.curl(b.url("/bytes/3"), proxy=p, cacert=p.ca())
    assert r.rc != 0, r   # nothing minted by us


@test
def upstream_proxy_refusing_the_tunnel_is_502():
    only_mitmlua()
    import socket
    import threading
    srv = socket.create_server(("127.0.0.1", 0))
    def refuse():
        c, _ = srv.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        c.close()
    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    p = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % srv.getsockname()[1],
                 "--set", "ignore_hosts=.*"]).start()
    data, _ = H.raw("127.0.0.1", p.port, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert H.status_of(data) == 502 and b"refused CONNECT to 127.0.0.1:9 with status 403" in data, data
    t.join(5)
    srv.close()


@test
def bad_pattern_is_a_usage_error():
    only_mitmlua()
    r = subprocess.run([H.BIN, "--set", "ignore_hosts=(unclosed"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"ignore_hosts" in r.stderr and len(r.stderr.splitlines()) == 1, r


if __name__ == "__main__":
    H.main()
