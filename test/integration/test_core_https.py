#!/usr/bin/python3
"""Core: HTTPS through CONNECT with TLS interception, end to end.

The minted certificate verifies with --cacert <confdir>/mitmlua-ca-cert.pem
for host names (a.test, b.test via --connect-to, localhost) and IP
addresses (127.0.0.1, ::1), SNI wins, validity <= 200 days; the CA files
and their modes; upstream verification (system store by default,
--set ssl_verify_upstream_trusted_ca=FILE, -k); the mitm.it page."""
import hashlib
import json
import os
import ssl
import stat
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend, payload

MB5 = 5 * 1024 * 1024


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def tls_backend():
    return Backend(tls=(pki().cert, pki().key)).start()


@fixture
def tls_backend6():
    return Backend(host="::1", tls=(pki().cert, pki().key)).start()


@fixture
def plain_backend():
    return Backend().start()


@fixture
def untrusted_backend():
    other = H.PKI("untrusted test CA")
    return Backend(tls=other.leaf()).start()


@fixture
def proxy():
    return H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()


def via_name(name, path="/echo", **kw):
    """curl https://NAME:PORT/path, the proxy told to connect to 127.0.0.1."""
    b = tls_backend()
    url = "https://%s:%d%s" % (name, b.port, path)
    ct = ["%s:%d:127.0.0.1:%d" % (name, b.port, b.port)]
    return H.curl(url, proxy=proxy(), cacert=proxy().ca(), connect_to=ct, **kw)


def echo_host(r):
    doc = json.loads(r.body)
    return [v for k, v in doc["headers"] if k.lower() == "host"]


@test
def https_host_names():
    b = tls_backend()
    for name in ("a.test", "b.test", "localhost"):
        r = via_name(name, verbose=True)
        assert r.rc == 0 and r.status == 200, (name, r.rc, r.stderr[-1500:])
        assert 'host "%s" matched cert' % name in r.stderr, r.stderr[-2000:]
        assert echo_host(r) == ["%s:%d" % (name, b.port)], r.body


@test
def https_ip_addresses():
    for b, host in ((tls_backend(), "127.0.0.1"), (tls_backend6(), "::1")):
        r = H.curl(b.url("/echo"), proxy=proxy(), cacert=proxy().ca(), verbose=True)
        assert r.rc == 0 and r.status == 200, (host, r.rc, r.stderr[-1500:])
        assert "SSL certificate verify ok" in r.stderr
        assert json.loads(r.body)["client"][0] == host


def _days(cert):
    return (ssl.cert_time_to_seconds(cert["notAfter"]) -
            ssl.cert_time_to_seconds(cert["notBefore"])) / 86400


@test
def minted_certificates():
    b, b6 = tls_backend(), tls_backend6()
    ca = proxy().ca()
    cases = [
        # (CONNECT target, SNI, SAN entry expected)
        ("127.0.0.1:%d" % b.port, "a.test", ("DNS", "a.test")),   # SNI wins
        ("127.0.0.1:%d" % b.port, "b.test", ("DNS", "b.test")),
        ("localhost:%d" % b.port, None, ("DNS", "localhost")),
        ("127.0.0.1:%d" % b.port, None, ("IP Address", "127.0.0.1")),
        ("[::1]:%d" % b6.port, None, ("IP Address", "0:0:0:0:0:0:0:1")),
    ]
    for target, sni, san in cases:
        cert = H.peer_cert(proxy(), target, sni, ca)  # verified against the CA
        sans = cert.get("subjectAltName", ())
        assert san in sans, (target, sni, sans)
        if not H.IS_MITMDUMP:  # mitmdump 8.1.1 mints for a year
            assert _days(cert) <= 200, (target, cert["notBefore"], cert["notAfter"])


@test
def ca_files_and_modes():
    conf = proxy().confdir
    st = os.stat(conf)
    if not H.IS_MITMDUMP:  # mitmdump creates its confdir 0755
        assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    key = os.path.join(conf, H.ca_name("-ca.pem"))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, oct(os.stat(key).st_mode)
    keytext = H.read(key)
    assert "PRIVATE KEY" in keytext and "BEGIN CERTIFICATE" in keytext
    for suffix in ("-ca-cert.pem", "-ca-cert.cer", "-ca-cert.p12"):
        p = os.path.join(conf, H.ca_name(suffix))
        assert os.path.getsize(p) > 0, p
    pem = os.path.join(conf, H.ca_name())
    out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-text"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "CA:TRUE" in out, out
    assert "PRIVATE" not in H.read(pem)
    der = subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER"],
                         capture_output=True, timeout=10).stdout
    cer = H.read(os.path.join(conf, H.ca_name("-ca-cert.cer")), "rb")
    assert cer in (der, H.read(pem, "rb")), "the .cer is neither the DER nor the PEM of the CA"
    p12 = subprocess.run(["openssl", "pkcs12", "-in", os.path.join(conf, H.ca_name("-ca-cert.p12")),
                          "-nokeys", "-passin", "pass:"], capture_output=True, text=True, timeout=10)
    if p12.returncode:  # RC2-encrypted (mitmproxy's pyOpenSSL) needs -legacy in OpenSSL 3
        p12 = subprocess.run(["openssl", "pkcs12", "-legacy", "-in",
                              os.path.join(conf, H.ca_name("-ca-cert.p12")),
                              "-nokeys", "-passin", "pass:"], capture_output=True, text=True, timeout=10)
    assert p12.returncode == 0, p12.stderr
    body = lambda t: "".join(t.split("-----BEGIN CERTIFICATE-----")[1].split("-----END")[0].split())
    assert body(p12.stdout) == body(H.read(pem)), "the .p12 does not hold the CA certificate"


@test
def ca_unique_per_confdir_and_kept_across_restarts():
    a = H.Proxy(label="a").start()
    a.stop()
    first = H.read(a.ca())
    b = H.Proxy(label="b").start()
    b.stop()
    assert H.read(b.ca()) != first, "two installs share a CA"
    again = H.Proxy(confdir=a.confdir, label="a-again").start()
    r = H.curl(tls_backend().url("/echo"), proxy=again, cacert=a.ca(), args=["-k"])
    again.stop()
    assert H.read(a.ca()) == first, "restart replaced the CA"


@test(timeout=60)
def https_big_bodies():
    path = os.path.join(H.tmpdir("up"), "body")
    data = payload(MB5 + 1)
    H.write(path, data, "wb")
    r = H.curl(tls_backend().url("/upload"), proxy=proxy(), cacert=proxy().ca(),
               data_file=path, max_time=40)
    assert r.status == 200, r
    assert json.loads(r.body) == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for path in ("/bytes/%d" % MB5, "/chunked/%d" % MB5, "/close/100000"):
        n = int(path.rsplit("/", 1)[1])
        r = H.curl(tls_backend().url(path), proxy=proxy(), cacert=proxy().ca(), max_time=40)
        assert r.rc == 0 and r.status == 200, (path, r.rc, r.stderr)
        assert r.body == payload(n), (path, len(r.body))


@test(timeout=60)
def https_large_body_read_in_large_pieces():
    # TLS from the server: OpenSSL reading the socket itself takes two reads
    # per 16 KB record (header, then record), 1,024 for 8 MB; over a filter
    # the socket is read in large pieces (bevbulk.h)
    n = 8 * 1024 * 1024
    pid = proxy().proc.pid
    r0, w0 = H.syscalls(pid)
    r = H.curl(tls_backend().url("/bytes/%d" % n), proxy=proxy(), cacert=proxy().ca(), max_time=40)
    r1, w1 = H.syscalls(pid)
    assert r.rc == 0 and r.body == payload(n), (r.rc, r.stderr)
    print("8 MB over TLS through the proxy: %d reads, %d writes" % (r1 - r0, w1 - w0))
    assert r1 - r0 < 700, "%d reads for 8 MB" % (r1 - r0)


@test
def server_tcp_setup_comes_before_its_tls_setup():
    # TCP first, then TLS over it, as mitmproxy: the two times differ by the
    # handshake (while OpenSSL connected the socket itself, both were taken
    # together after the handshake, and server_connected came only then)
    out = os.path.join(H.tmpdir("ts"), "ts")
    lua = ('function response(f) local s = f.server_conn local o = io.open(%s, "a") '
           'o:write(string.format("%%.6f %%.6f\\n", s.timestamp_tcp_setup, s.timestamp_tls_setup)) o:close() end'
           % H.lua_quote(out))
    py = ('def response(flow):\n    s = flow.server_conn\n    with open(%r, "a") as o:\n'
          '        o.write("%%.6f %%.6f\\n" %% (s.timestamp_tcp_setup, s.timestamp_tls_setup))\n' % out)
    p = H.Proxy(["-s", H.script("ts", lua, py), "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    r = H.curl(tls_backend().url("/echo"), proxy=p, cacert=p.ca())
    assert r.rc == 0 and r.status == 200, r
    tcp, tls = (float(x) for x in H.read(out).split())
    assert 0 < tcp < tls, (tcp, tls)


@test
def https_keep_alive_in_tunnel():
    b = tls_backend()
    b.clear()
    r = H.curl([b.url("/echo"), b.url("/bytes/10"), b.url("/status/204")],
               proxy=proxy(), cacert=proxy().ca(), verbose=True)
    assert r.rc == 0 and r.status == 204, r
    assert r.stderr.count("Re-using existing connection") == 2, r.stderr[-3000:]
    assert r.stderr.count("> CONNECT ") == 1, r.stderr[-3000:]
    clients = {tuple(e["client"]) for e in b.log}
    assert len(clients) == 1 and len(b.log) == 3, b.log


@test
def plain_http_through_connect():
    b = plain_backend()
    r = H.curl(b.url("/echo"), proxy=proxy(), args=["--proxytunnel"], verbose=True)
    assert r.rc == 0 and r.status == 200, (r.rc, r.stderr[-2000:])
    assert "CONNECT 127.0.0.1:%d" % b.port in r.stderr
    assert json.loads(r.body)["request_line"] == "GET /echo HTTP/1.1"


@test
def upstream_verification():
    ub = untrusted_backend()
    ub.clear()
    r = H.curl(ub.url("/echo"), proxy=proxy(), cacert=proxy().ca())
    assert r.status == 502, (r.status, r.rc, r.stderr)
    assert r.body.strip(), "a 502 without a reason"
    assert ub.paths() == [], ub.log
    # the system store is used by default, so the test CA is not trusted...
    strict = H.Proxy(label="no-trusted-ca").start()
    r = H.curl(tls_backend().url("/echo"), proxy=strict, cacert=strict.ca())
    assert r.status == 502, (r.status, r.rc, r.stderr)
    strict.stop()
    # ...and -k turns verification off
    k = H.Proxy(["-k"], label="insecure").start()
    r = H.curl(ub.url("/echo"), proxy=k, cacert=k.ca())
    assert r.rc == 0 and r.status == 200, (r.status, r.rc, r.stderr)
    assert ub.paths() == ["/echo"]
    k.stop()


@test
def onboarding_page():
    p = proxy()
    r = H.curl("http://mitm.it/", proxy=p)
    assert r.status == 200, r
    page = r.body.decode("utf-8", "replace")
    for href in ('"/cert/pem"', '"/cert/p12"', '"/cert/cer"'):
        assert href in page, (href, page[:500])
    r = H.curl("http://mitm.it/cert/pem", proxy=p)
    assert r.status == 200 and r.body == H.read(p.ca(), "rb"), r
    r = H.curl("http://mitm.it/cert/cer", proxy=p)
    assert r.status == 200 and r.body == H.read(p.ca("-ca-cert.cer"), "rb"), r
    r = H.curl("http://mitm.it/cert/p12", proxy=p)
    assert r.status == 200 and r.body == H.read(p.ca("-ca-cert.p12"), "rb"), r


if __name__ == "__main__":
    H.main()
