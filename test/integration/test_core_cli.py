#!/usr/bin/python3
"""Core: the command line.  Usage errors (unknown --set name, bad --mode,
bad value) exit 2 with a one-line message; a busy port exits 1; SIGTERM
and SIGINT exit 0; the default listen host is 127.0.0.1; the console
output at the default detail, -q and --flow-detail 2/3; reverse and
upstream modes."""
import os
import re
import signal
import socket
import subprocess

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


def run_bin(args, timeout=10):
    """Run the proxy binary to completion (it is expected to exit)."""
    conf = os.path.join(H.tmpdir("conf"), "c")
    confargs = ["--set", "confdir=" + conf] if H.IS_MITMDUMP else ["--confdir", conf]
    cmd = [H.BIN, "-p", str(H.free_port()), "--listen-host", "127.0.0.1"] + confargs + args
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s still running after %ss" % (cmd, timeout))


def usage_error(args, mention):
    r = run_bin(args)
    if H.IS_MITMDUMP:
        assert r.returncode != 0, r  # mitmdump uses 1 for these
        return
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, "want a one-line error, got %r" % r.stderr
    assert mention in lines[0], lines
    assert r.stdout == "", r.stdout


@test
def unknown_set_name_exit_2():
    H.skip_if_mitmdump("keeps unknown --set names for scripts")
    usage_error(["--set", "nosuch=1"], "nosuch")


@test
def bad_mode_exit_2():
    usage_error(["--mode", "foo"], "foo")


@test
def bad_value_exit_2():
    usage_error(["--flow-detail", "notanumber"], "notanumber")
    if not H.IS_MITMDUMP:
        usage_error(["--set", "read_timeout=soon"], "soon")


@test
def busy_port_exit_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = H.Proxy(port=port)
        p.spawn()
        rc = p.wait(15)
    assert rc == 1, (rc, p.stderr)
    assert str(port) in p.stderr + p.stdout, p.describe()


@test
def unusable_trusted_ca_file_stops_startup():
    """ssl_verify_upstream_trusted_ca is checked before any traffic (the
    TLS contexts themselves are made on first use): a missing file or one
    without a PEM certificate is a one-line error naming it, exit 1."""
    H.skip_if_mitmdump("starts anyway and fails the first TLS connection")
    d = H.tmpdir("ca")
    junk = H.write(os.path.join(d, "junk.pem"), "not a certificate\n")
    for path, why in ((os.path.join(d, "missing.pem"), "No such file"), (junk, "no PEM certificate")):
        r = run_bin(["--set", "ssl_verify_upstream_trusted_ca=" + path])
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
        assert path in lines[0] and why in lines[0], lines


@test
def version():
    r = subprocess.run([H.BIN, "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout.strip(), r


def stops_cleanly(sig):
    p = H.Proxy().start()
    r = H.curl(backend().url("/bytes/10"), proxy=p)
    assert r.status == 200, r
    idle = H.Conn("127.0.0.1", p.port)  # an idle keep-alive client must not block exit
    idle.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (backend().url("/echo").encode(),
                                                       backend().netloc.encode()))
    assert idle.response()[0] == 200
    rc = p.stop(sig, timeout=10)
    idle.close()
    assert rc == 0, (rc, p.describe())


@test
def sigterm_exits_0():
    stops_cleanly(signal.SIGTERM)


@test
def sigint_exits_0():
    stops_cleanly(signal.SIGINT)


@test
def default_listen_host_is_loopback():
    H.skip_if_mitmdump("listens on all interfaces by default")
    p = H.Proxy(listen_host_flag=False).start()
    want = "0100007F:%04X" % p.port
    listeners = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = H.read(table).splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and f[1].endswith(":%04X" % p.port):  # LISTEN
                listeners.append(f[1])
    assert listeners == [want], listeners


@test
def listen_on_ipv6_loopback():
    p = H.Proxy(host="::1").start()
    r = H.curl(backend().url("/echo"), proxy=p)
    assert r.status == 200, r
    assert p.wait_output(re.compile(r"^\[::1\]:\d+: GET %s" % re.escape(backend().url("/echo")), re.M)), p.stdout


@fixture
def printing_proxies():
    return {d: H.Proxy(["--flow-detail", str(d)] if d is not None else ["-q"], label="fd%s" % d).start()
            for d in (None, 1, 2, 3)}


def printed(detail):
    """Run one marked POST through the proxy at that detail level; return
    its stdout after the flow (waits for the response line)."""
    p = printing_proxies()[detail]
    url = backend().url("/upload?detail=%s" % detail)
    r = H.curl(url, proxy=p, data=b"marker-body-17", headers=["X-Marker: hdr-value-42"])
    assert r.status == 200, r
    if detail is not None:
        assert p.wait_output(re.compile(r"<< .*200 OK"), 5), p.describe()
    return p, url


@test
def console_default_lines():
    p = H.Proxy().start()
    url = backend().url("/bytes/2048")
    r = H.curl(url, proxy=p)
    assert r.status == 200
    pat = re.compile(r"^127\.0\.0\.1:\d+: GET %s( HTTP/1\.1)?\n\s+<< (HTTP/1\.1 )?200 OK 2\.0k$"
                     % re.escape(url), re.M)
    assert p.wait_output(pat, 5), p.stdout
    assert "X-Marker" not in p.stdout


@test
def console_quiet():
    p, url = printed(None)
    rc = p.stop()
    assert rc == 0
    assert p.stdout == "", p.stdout
    assert "upload" not in p.stderr, p.stderr


@test
def console_flow_detail():
    p1, url = printed(1)
    assert url in p1.stdout and "hdr-value-42" not in p1.stdout, p1.stdout
    p2, url = printed(2)
    out = p2.stdout
    assert re.search(r"^\s+X-Marker: hdr-value-42$", out, re.M), out
    assert re.search(r"^\s+Content-Type: application/json$", out, re.M), out  # response header
    assert "marker-body-17" not in out, out
    p3, url = printed(3)
    out = p3.stdout
    assert re.search(r"^\s+X-Marker: hdr-value-42$", out, re.M), out
    assert "marker-body-17" in out, out                 # request body
    assert re.search(r'"length": 14', out), out          # response body


@test
def reverse_mode():
    b = backend()
    p = H.Proxy(["--mode", "reverse:http://%s" % b.netloc]).start()
    r = H.curl(p.url + "/echo?rev=1")
    assert r.status == 200, r
    import json
    doc = json.loads(r.body)
    assert doc["request_line"] == "GET /echo?rev=1 HTTP/1.1", doc
    assert [v for k, v in doc["headers"] if k.lower() == "host"] == [b.netloc], doc
    r = H.curl(p.url + "/chunked/300000")
    assert r.status == 200 and r.body == payload(300000)
    # to a TLS upstream, verified against the test CA
    tb = tls_backend()
    p2 = H.Proxy(["--mode", "reverse:https://localhost:%d" % tb.port,
                  "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    r = H.curl(p2.url + "/bytes/1000")
    assert r.status == 200 and r.body == payload(1000), r


@test
def reverse_mode_takes_tls_clients_too():
    # as mitmproxy's reverse mode: the same port serves TLS clients (a
    # minted certificate, named by SNI or else by the target host) and
    # plain ones
    tb = tls_backend()
    p = H.Proxy(["--mode", "reverse:https://localhost:%d" % tb.port,
                 "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    r = H.curl("https://localhost:%d/echo?tls=1" % p.port, cacert=p.ca())
    assert r.rc == 0 and r.status == 200, r
    import json
    doc = json.loads(r.body)
    assert [v for k, v in doc["headers"] if k.lower() == "host"] == ["localhost:%d" % tb.port], doc
    # no SNI: the certificate is for the target host
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=p.ca())
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=None) as t:
            san = t.getpeercert()["subjectAltName"]
    assert ("DNS", "localhost") in san, san
    r = H.curl(p.url + "/bytes/20")
    assert r.status == 200 and r.body == payload(20), r
    if not H.IS_MITMDUMP:
        r = H.curl("https://localhost:%d/bytes/30" % p.port, cacert=p.ca(), http11=False,
                   args=["--http2", "-w", "\n%{http_version}"])
        assert r.rc == 0 and r.body == payload(30) + b"\n2", r
        assert p.wait_output("GET https://localhost:%d/echo?tls=1" % tb.port), p.stdout


@test(timeout=60)
def upstream_mode():
    # B: a plain proxy (mitmdump, the reference), A: ours in upstream mode
    # pointing at B.
    b = backend()
    second = H.need_mitmdump()
    B = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert],
                binary=second, label="upstream-B").start()
    bundle = os.path.join(H.tmpdir("bundle"), "cas.pem")
    H.write(bundle, H.read(pki().ca_cert) + H.read(B.ca()))
    A = H.Proxy(["--mode", "upstream:http://127.0.0.1:%d" % B.port,
                 "--set", "ssl_verify_upstream_trusted_ca=" + bundle], label="A").start()
    url = b.url("/echo?chain=1")
    r = H.curl(url, proxy=A)
    assert r.status == 200, r
    assert B.wait_output("GET " + url), B.stdout
    assert A.wait_output("GET " + url), A.stdout
    tb = tls_backend()
    url = tb.url("/bytes/5000")
    r = H.curl(url, proxy=A, cacert=A.ca())
    assert r.rc == 0 and r.status == 200 and r.body == payload(5000), r
    assert B.wait_output("GET " + url), B.stdout


if __name__ == "__main__":
    H.main()
