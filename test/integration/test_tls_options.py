#!/usr/bin/python3
"""TLS options (issue 17), with real parts: one nginx with three servers
(client certificates required; TLS 1.2 only; TLS 1.3 only), curl with
--tlsv1.x/--tls-max/--ciphers on the client side, and Python's ssl module
to read the certificate the proxy presents.

client_certs (file, and a directory of HOST.pem), tls_version_server_*,
tls_version_client_*, ciphers_server, ciphers_client, certs ([domain=]path,
wildcards), key_size, ssl_verify_upstream_trusted_confdir (plain and
hashed), upstream_cert (accepted: the leaf carries the name the client
asked for), and every bad value: exit status 2 with a line naming it."""
import atexit
import hashlib
import os
import shutil
import socket
import ssl
import subprocess

import harness as H
from harness import test, fixture


# ---- parts -----------------------------------------------------------------

@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


def client_cert(p, cn="mitmlua test client"):
    """A client certificate (clientAuth) signed by p's CA: (bundle, cert)
    where bundle holds the certificate and its key, as client_certs wants."""
    base = os.path.join(p.dir, "client-%d" % len(os.listdir(p.dir)))
    H.write(base + ".ext", "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\n")
    H._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + cn, cwd=p.dir)
    H._openssl("x509", "-req", "-in", base + ".csr", "-CA", p.ca_cert, "-CAkey", p.ca_key,
               "-CAcreateserial", "-days", "30", "-extfile", base + ".ext", "-extensions", "v3",
               "-out", base + ".pem", cwd=p.dir)
    bundle = base + "-bundle.pem"
    H.write(bundle, H.read(base + ".pem") + H.read(base + ".key"))
    return bundle, base + ".pem"


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@fixture
def nginx():
    """Ports: mtls (ssl_verify_client on), tls12 (TLSv1.2 only), tls13
    (TLSv1.3 only); each answers with the protocol, cipher and client DN."""
    p = pki()
    d = H.tmpdir("nginx")
    ports = {k: H.free_port() for k in ("mtls", "tls12", "tls13")}
    answer = 'return 200 "$ssl_protocol $ssl_cipher client=$ssl_client_s_dn\\n";'
    conf = os.path.join(d, "nginx.conf")
    H.write(conf, """
%(user)s
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    ssl_certificate %(cert)s;
    ssl_certificate_key %(key)s;
    server {
        listen 127.0.0.1:%(mtls)d ssl;
        ssl_verify_client on;
        ssl_client_certificate %(ca)s;
        location / { %(answer)s }
    }
    server {
        listen 127.0.0.1:%(tls12)d ssl;
        ssl_protocols TLSv1.2;
        location / { %(answer)s }
    }
    server {
        listen 127.0.0.1:%(tls13)d ssl;
        ssl_protocols TLSv1.3;
        location / { %(answer)s }
    }
}
""" % dict(ports, d=d, cert=p.cert, key=p.key, ca=p.ca_cert, answer=answer,
           # as root, nginx's workers would run as nobody, who cannot read our tmp files
           user="user root;" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen(["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf,
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop():
        proc.terminate()
        proc.wait(10)
    atexit.register(stop)
    if not all(H.wait_for(lambda port=port: _connects(port), timeout=10) for port in ports.values()):
        raise AssertionError("nginx did not start: %s" % H.read(os.path.join(d, "error.log")))
    return ports


def trusting(*args, **kw):
    """A proxy that trusts the test CA for upstream verification."""
    return H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert] + list(args), **kw).start()


def get(p, which, path="/", **kw):
    return H.curl("https://localhost:%d%s" % (nginx()[which], path), proxy=p, cacert=p.ca(), **kw)


def presented(p, target, sni, verify=None):
    """CONNECT target through p, handshake with SNI sni; the DER of the
    certificate the proxy presents (verified against `verify` when given)."""
    with socket.create_connection((p.host, p.port), timeout=10) as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(4096)
            assert b, "proxy closed during CONNECT: %r" % buf
            buf += b
        assert H.status_of(buf) == 200, buf
        if verify:
            ctx = ssl.create_default_context(cafile=verify)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return t.getpeercert(binary_form=True)


def der_of(pem_path):
    return ssl.PEM_cert_to_DER_cert(H.read(pem_path).split("-----END CERTIFICATE-----")[0]
                                    + "-----END CERTIFICATE-----\n")


def cert_text(der):
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der,
                       capture_output=True, timeout=20)
    return r.stdout.decode()


def run_bad(*sets):
    """mitmlua with these --set values: (status, stderr)."""
    conf = os.path.join(H.tmpdir("conf"), "confdir")
    cmd = [H.BIN, "-n", "--confdir", conf]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


# ---- client_certs ---------------------------------------------------------------

@test(timeout=60)
def client_certs_file_for_mtls():
    n = nginx()
    without = trusting(label="no-client-certs")
    r = get(without, "mtls")
    # nginx finishes the handshake without a certificate and answers 400 itself
    assert r.status == 400 and b"No required SSL certificate was sent" in r.body, r
    bundle, _ = client_cert(pki())
    withc = trusting("--set", "client_certs=" + bundle, label="client-certs-file")
    r = get(withc, "mtls")
    assert r.rc == 0 and r.status == 200 and b"client=CN=mitmlua test client" in r.body, r
    # the other servers do not ask for one: the file changes nothing there
    r = get(withc, "tls13")
    assert r.status == 200 and b"client=\n" in r.body, r
    del n


@test(timeout=60)
def client_certs_directory_picks_host_pem():
    d = H.tmpdir("client-certs")
    bundle, _ = client_cert(pki(), cn="client for localhost")
    shutil.copy(bundle, os.path.join(d, "localhost.pem"))
    p = trusting("--set", "client_certs=" + d)
    r = get(p, "mtls")
    assert r.rc == 0 and r.status == 200 and b"client=CN=client for localhost" in r.body, r
    # by address there is no SNI: the name is 127.0.0.1, and no 127.0.0.1.pem
    r = H.curl("https://127.0.0.1:%d/" % nginx()["mtls"], proxy=p, cacert=p.ca())
    assert r.status == 400 and b"No required SSL certificate" in r.body, r
    shutil.copy(bundle, os.path.join(d, "127.0.0.1.pem"))
    r = H.curl("https://127.0.0.1:%d/" % nginx()["mtls"], proxy=p, cacert=p.ca())
    assert r.status == 200 and b"client=CN=client for localhost" in r.body, r
    if H.IS_MITMDUMP:
        return  # it caches a context per client certificate path: a changed file goes unseen
    # a file whose key is encrypted fails the flow, naming the file (no prompt)
    base = bundle[:-len("-bundle.pem")]
    enc = os.path.join(H.tmpdir("enc"), "enc.key")
    H._openssl("pkey", "-in", base + ".key", "-aes256", "-passout", "pass:secret", "-out", enc,
               cwd=pki().dir)
    H.write(os.path.join(d, "127.0.0.1.pem"), H.read(base + ".pem") + H.read(enc))
    r = H.curl("https://127.0.0.1:%d/" % nginx()["mtls"], proxy=p, cacert=p.ca())
    assert r.status == 502 and b"cannot load client certificate" in r.body and b"127.0.0.1.pem" in r.body, r


# ---- TLS versions and ciphers -----------------------------------------------------

@test(timeout=60)
def tls_version_server_min_max():
    H.skip_if_mitmdump("mitmdump 8.1.1 applies tls_version_client_* to servers")
    nginx()
    p = trusting()
    assert get(p, "tls12").body.startswith(b"TLSv1.2 "), "default: TLS1_2..UNBOUNDED"
    assert get(p, "tls13").body.startswith(b"TLSv1.3 ")
    only13 = trusting("--set", "tls_version_server_min=TLS1_3", label="server-min-1.3")
    r = get(only13, "tls12")
    assert r.status == 502, r
    assert b"tls_version_server_min/max allow TLS1_3 to UNBOUNDED" in r.body, r.body
    assert get(only13, "tls13").body.startswith(b"TLSv1.3 ")
    only12 = trusting("--set", "tls_version_server_max=TLS1_2", label="server-max-1.2")
    r = get(only12, "tls13")
    assert r.status == 502 and b"tls_version_server_min/max allow TLS1_2 to TLS1_2" in r.body, r.body
    assert get(only12, "tls12").body.startswith(b"TLSv1.2 ")


def curl_version(r):
    for line in r.stderr.splitlines():
        if "SSL connection using" in line:
            return line.split("using", 1)[1].strip()
    return None


@test(timeout=60)
def tls_version_client_min_max():
    H.skip_if_mitmdump("mitmdump 8.1.1 applies tls_version_client_* to servers too")
    nginx()
    p = trusting()
    r = get(p, "tls13", args=["--tls-max", "1.2"], verbose=True)
    assert r.status == 200 and curl_version(r).startswith("TLSv1.2"), (r, curl_version(r))
    strict = trusting("--set", "tls_version_client_min=TLS1_3", label="client-min-1.3")
    r = get(strict, "tls13", args=["--tls-max", "1.2"])
    # the handshake with us failed, after the CONNECT (mitmdump just closes)
    assert r.rc == 35 and r.body == b"", r
    if not H.IS_MITMDUMP:
        assert "protocol version" in r.stderr, r
        assert strict.wait_output("unsupported protocol (tls_version_client_min/max allow TLS1_3 to UNBOUNDED)",
                                  stream="stderr"), strict.stderr
    r = get(strict, "tls13", args=["--tlsv1.3"], verbose=True)
    assert r.status == 200 and curl_version(r).startswith("TLSv1.3"), r
    capped = trusting("--set", "tls_version_client_max=TLS1_2", label="client-max-1.2")
    r = get(capped, "tls13", args=["--tlsv1.3"])
    assert r.rc == 35 and (H.IS_MITMDUMP or "protocol version" in r.stderr), r
    r = get(capped, "tls13", verbose=True)
    assert r.status == 200 and curl_version(r).startswith("TLSv1.2"), r


@test(timeout=60)
def tls_version_client_tls1_0_lowers_the_security_level():
    H.skip_if_mitmdump("the warning is ours")
    nginx()
    old = ["--tlsv1.0", "--tls-max", "1.0", "--ciphers", "DEFAULT:@SECLEVEL=0"]
    p = trusting()
    r = get(p, "tls13", args=old)
    assert r.rc == 35, r                                # TLS1_2 is the default minimum
    p1 = trusting("--set", "tls_version_client_min=TLS1", label="client-min-1.0")
    assert "tls_version_client_min=TLS1: TLS below 1.2 allowed" in p1.stderr, p1.stderr
    r = get(p1, "tls13", args=old, verbose=True)
    assert r.status == 200 and curl_version(r).startswith("TLSv1 "), (r, curl_version(r))


@test(timeout=60)
def ciphers_client_and_server():
    nginx()
    # the minted certificates' key: ECDSA (key_type's default), RSA in mitmdump
    kx = "ECDHE-RSA" if H.IS_MITMDUMP else "ECDHE-ECDSA"
    p = trusting("--set", "ciphers_client=%s-AES128-GCM-SHA256" % kx)
    r = get(p, "tls12", args=["--tls-max", "1.2", "--ciphers", "%s-AES256-GCM-SHA384" % kx])
    assert r.rc == 35, r                               # no cipher in common
    r = get(p, "tls12", args=["--tls-max", "1.2"], verbose=True)
    assert r.status == 200 and "%s-AES128-GCM-SHA256" % kx in curl_version(r), curl_version(r)
    # toward nginx (an ECDSA certificate), with TLS 1.2
    s = trusting("--set", "ciphers_server=ECDHE-ECDSA-AES128-SHA", label="ciphers-server")
    r = get(s, "tls12")
    assert r.status == 200 and r.body.startswith(b"TLSv1.2 ECDHE-ECDSA-AES128-SHA "), r.body
    rsa_only = trusting("--set", "ciphers_server=ECDHE-RSA-AES128-GCM-SHA256", label="ciphers-rsa-only")
    r = get(rsa_only, "tls12")
    assert r.status == 502 and b"handshake failure" in r.body, r


# ---- our certificates ---------------------------------------------------------------

@test(timeout=60)
def certs_our_own_certificate():
    H.skip_if_mitmdump("fingerprint check of the proxy's own certificate")
    own_pki = H.PKI("own certs CA")
    cert, key = own_pki.leaf(dns=("own.test", "*.wild.test"), ips=())
    bundle = os.path.join(own_pki.dir, "own-bundle.pem")
    H.write(bundle, H.read(cert) + H.read(key))
    want = hashlib.sha256(der_of(cert)).hexdigest()
    p = H.Proxy(["--set", "certs=own.test=" + bundle,
                 "--set", "certs=*.other.test=" + bundle]).start()
    got = presented(p, "own.test:443", "own.test", verify=own_pki.ca_cert)
    assert hashlib.sha256(got).hexdigest() == want
    # the certificate's own SANs register it too (*.wild.test), and so does
    # the spec's wildcard at any depth (*.other.test covers a.b.other.test)
    for host in ("x.wild.test", "a.b.other.test"):
        got = presented(p, host + ":443", host)
        assert hashlib.sha256(got).hexdigest() == want, host
    # anything else is minted by our CA, as before
    got = presented(p, "b.test:443", "b.test", verify=p.ca())
    assert hashlib.sha256(got).hexdigest() != want
    # no domain means every host
    every = H.Proxy(["--set", "certs=" + bundle], label="certs-star").start()
    got = presented(every, "b.test:443", "b.test")
    assert hashlib.sha256(got).hexdigest() == want


@test(timeout=60)
def cert_passphrase_decrypts_certs_keys():
    H.skip_if_mitmdump("our messages")
    own_pki = H.PKI("own certs CA")
    cert, key = own_pki.leaf(dns=("own.test",), ips=())
    enc = os.path.join(own_pki.dir, "own-enc.key")
    H._openssl("pkey", "-in", key, "-aes256", "-passout", "pass:s3cret", "-out", enc, cwd=own_pki.dir)
    bundle = os.path.join(own_pki.dir, "own-enc-bundle.pem")
    H.write(bundle, H.read(cert) + H.read(enc))
    rc, err = run_bad("certs=own.test=" + bundle)
    assert rc == 2 and "no (unencrypted) PEM private key" in err, err
    rc, err = run_bad("certs=own.test=" + bundle, "cert_passphrase=wrong")
    assert rc == 2 and "certs" in err and "cert_passphrase" in err and len(err.strip().splitlines()) == 1, err
    p = H.Proxy(["--set", "certs=own.test=" + bundle, "--set", "cert_passphrase=s3cret"]).start()
    got = presented(p, "own.test:443", "own.test", verify=own_pki.ca_cert)
    assert got == der_of(cert)


def handshake_with_curve(p, curve):
    """A TLS handshake through p offering only `curve`: True when it works."""
    with socket.create_connection((p.host, p.port), timeout=10) as s:
        s.sendall(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        ctx = ssl.create_default_context(cafile=p.ca())
        ctx.set_ecdh_curve(curve)
        try:
            with ctx.wrap_socket(s, server_hostname="a.test"):
                return True
        except ssl.SSLError:
            return False


@test(timeout=60)
def tls_ecdh_curve_client_and_server():
    H.skip_if_mitmdump("mitmdump 8.1.1 has no tls_ecdh_curve_*")
    p = H.Proxy(["--set", "tls_ecdh_curve_client=secp384r1"]).start()
    assert handshake_with_curve(p, "secp384r1")
    assert not handshake_with_curve(p, "prime256v1")
    d = H.Proxy(label="default-curves").start()
    assert handshake_with_curve(d, "prime256v1") and handshake_with_curve(d, "secp384r1")
    # towards servers: an openssl s_server that speaks P-256 only
    port = H.free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", str(port), "-cert", pki().cert, "-key", pki().key,
                            "-groups", "P-256", "-www", "-quiet"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(srv.kill)
    try:
        assert H.wait_for(lambda: _connects(port), 10)
        url = "https://localhost:%d/" % port
        for curve, ok in (("prime256v1", True), ("secp384r1", False)):
            q = trusting("--set", "tls_ecdh_curve_server=" + curve, label="curve-" + curve)
            r = H.curl(url, proxy=q, cacert=q.ca())
            assert (r.status == 200) == ok and (ok or r.status == 502), (curve, r)
    finally:
        srv.kill()
        srv.wait()


def asks_for_client_cert(p):
    r = subprocess.run(["openssl", "s_client", "-proxy", "%s:%d" % (p.host, p.port), "-connect", "a.test:443",
                        "-servername", "a.test", "-CAfile", p.ca()], input=b"", capture_output=True, timeout=30)
    out = r.stdout.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out, out   # the handshake went through
    return "Requested Signature Algorithms" in out    # printed for a CertificateRequest


@test(timeout=60)
def request_client_cert_asks_clients_for_one():
    H.skip_if_mitmdump("mitmdump 8.1.1 has no request_client_cert")
    assert not asks_for_client_cert(H.Proxy(label="default").start())
    p = H.Proxy(["--set", "request_client_cert=true"]).start()
    assert asks_for_client_cert(p)      # and a client without one goes on
    # a client that sends one is accepted, whoever signed it
    bundle, _ = client_cert(H.PKI("some other CA"))
    closed = H.free_port()
    with socket.create_connection((p.host, p.port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % closed)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        ctx = ssl.create_default_context(cafile=p.ca())
        ctx.load_cert_chain(bundle)
        with ctx.wrap_socket(s, server_hostname="a.test") as t:
            # an answer inside the tunnel (502: nothing listens there) shows
            # the proxy took the certificate (TLS 1.3 would refuse it late)
            t.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert t.recv(100).startswith(b"HTTP/1.1 502"), "no answer through the tunnel"


@test(timeout=90)
def key_size_of_minted_certificates():
    H.skip_if_mitmdump("mitmdump applies key_size when it creates the CA only")
    p = H.Proxy(["--set", "key_type=rsa", "--set", "key_size=3072"]).start()
    der = presented(p, "a.test:443", "a.test", verify=p.ca())
    assert "Public-Key: (3072 bit)" in cert_text(der), cert_text(der)
    d = H.Proxy(["--set", "key_type=rsa"], label="default-key-size").start()
    der = presented(d, "a.test:443", "a.test", verify=d.ca())
    assert "Public-Key: (2048 bit)" in cert_text(der)
    # key_type's default: ECDSA P-256, whatever key_size says (with a warning)
    e = H.Proxy(["--set", "key_size=3072"], label="ecdsa").start()
    der = presented(e, "a.test:443", "a.test", verify=e.ca())
    assert "Public-Key: (256 bit)" in cert_text(der) and "prime256v1" in cert_text(der), cert_text(der)
    assert "key_size=3072: applies to key_type=rsa only" in e.stderr, e.stderr


@test(timeout=60)
def upstream_cert_with_eager_connections():
    """upstream_cert (mitmdump's default) copies the server certificate's
    CN and SANs into the minted one where the server is contacted before
    the client's handshake: connection_strategy=eager.  Lazy, false, or a
    server whose certificate does not verify: the requested name alone."""
    H.skip_if_mitmdump("mitmdump applies upstream_cert in lazy mode too")
    n = nginx()
    target = "localhost:%d" % n["tls13"]

    def sans(*args, trust=True, label):
        p = (trusting if trust else lambda *a, **kw: H.Proxy(list(a), **kw).start())(*args, label=label)
        text = cert_text(presented(p, target, "localhost", verify=p.ca()))
        assert "DNS:localhost" in text, text
        return text
    text = sans("--set", "connection_strategy=eager", label="eager")
    # the test leaf names localhost, a.test, b.test, 127.0.0.1 and ::1
    assert "DNS:a.test" in text and "DNS:b.test" in text and "IP Address:127.0.0.1" in text, text
    assert "DNS:a.test" not in sans(label="lazy")
    assert "DNS:a.test" not in sans("--set", "connection_strategy=eager", "--set", "upstream_cert=false",
                                     label="eager-no-upstream-cert")
    assert "DNS:a.test" not in sans("--set", "connection_strategy=eager", trust=False, label="eager-untrusted")
    # and the flows themselves go on as usual
    p = trusting("--set", "connection_strategy=eager", label="eager-flow")
    r = get(p, "tls13")
    assert r.status == 200 and r.body.startswith(b"TLSv1.3 "), r


def chain_subjects(p, port):
    """openssl s_client through p's CONNECT: the ' s:' and ' i:' lines of
    the chain the proxy sends."""
    r = subprocess.run(["openssl", "s_client", "-proxy", "%s:%d" % (p.host, p.port),
                        "-connect", "localhost:%d" % port, "-servername", "localhost",
                        "-showcerts"], input=b"", capture_output=True, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    return [l.strip() for l in out.splitlines() if l.strip()[:1].isdigit() and " s:" in l or
            l.strip().startswith("i:")]


@test(timeout=60)
def add_upstream_certs_to_client_chain_with_eager():
    H.skip_if_mitmdump("mitmdump applies it in lazy mode too")
    n = nginx()
    plain = trusting("--set", "connection_strategy=eager", "--set", "upstream_cert=false", label="eager")
    lines = chain_subjects(plain, n["tls13"])
    assert lines and not any("mitmlua test CA" in l for l in lines), lines
    p = trusting("--set", "connection_strategy=eager", "--set", "add_upstream_certs_to_client_chain=true",
                 "--set", "upstream_cert=false", label="eager-add-chain")
    lines = chain_subjects(p, n["tls13"])
    # ours first, then the certificate nginx sent (issued by the test CA)
    assert any("i:CN = mitmlua test CA" in l for l in lines), lines
    assert "mitmlua" in lines[0] or "localhost" in lines[0], lines
    lazy = trusting("--set", "add_upstream_certs_to_client_chain=true", label="lazy-add-chain")
    assert not any("mitmlua test CA" in l for l in chain_subjects(lazy, n["tls13"]))


# ---- upstream trust ----------------------------------------------------------------

@test(timeout=60)
def ssl_verify_upstream_trusted_confdir_plain_and_hashed():
    nginx()
    plain = H.tmpdir("trusted-plain")
    shutil.copy(pki().ca_cert, os.path.join(plain, "test-ca.pem"))
    hashed = H.tmpdir("trusted-hashed")
    shutil.copy(pki().ca_cert, os.path.join(hashed, "test-ca.crt"))
    subprocess.run(["openssl", "rehash", hashed], check=True, capture_output=True, timeout=20)
    untrusting = H.Proxy(label="no-trust").start()
    assert get(untrusting, "tls13").status == 502
    # mitmdump hands the directory to OpenSSL as a CApath: hashed names only
    for d in (hashed,) if H.IS_MITMDUMP else (plain, hashed):
        p = H.Proxy(["--set", "ssl_verify_upstream_trusted_confdir=" + d], label="trust-" + d).start()
        r = get(p, "tls13")
        assert r.status == 200 and r.body.startswith(b"TLSv1.3 "), (d, r)


# ---- bad values ----------------------------------------------------------------------

@test(timeout=90)
def bad_values_are_usage_errors():
    H.skip_if_mitmdump("our messages")
    notpem = os.path.join(H.tmpdir("bad"), "not.pem")
    H.write(notpem, "hello\n")
    cases = [
        ("tls_version_client_min=TLS9", "tls_version_client_min: 'TLS9'"),
        ("tls_version_server_max=tls1_3", "tls_version_server_max: 'tls1_3'"),
        ("tls_version_client_max=SSL3", "tls_version_client_max: 'SSL3'"),
        ("ciphers_client=NO-SUCH-CIPHER", "ciphers_client: 'NO-SUCH-CIPHER'"),
        ("ciphers_server=ALSO-NONE", "ciphers_server: 'ALSO-NONE'"),
        ("tls_ecdh_curve_client=nocurve", "tls_ecdh_curve_client: 'nocurve'"),
        ("tls_ecdh_curve_server=P-256:P-384", "tls_ecdh_curve_server: 'P-256:P-384'"),
        ("key_size=512", "key_size: 512"),
        ("key_size=big", "key_size: 'big'"),
        ("key_type=dsa", "key_type: 'dsa' (expected ecdsa or rsa)"),
        ("certs=/nonexistent/c.pem", "certs: cannot read '/nonexistent/c.pem'"),
        ("certs=a.test=" + notpem, "certs: '%s': no PEM certificate" % notpem),
        ("certs==" + notpem, "certs: '=%s'" % notpem),
        ("client_certs=/nonexistent", "client_certs: '/nonexistent'"),
        ("client_certs=" + notpem, "client_certs: '%s'" % notpem),
        ("client_certs=" + pki().ca_cert, "no (unencrypted) PEM private key"),
        ("ssl_verify_upstream_trusted_confdir=" + notpem, "ssl_verify_upstream_trusted_confdir: '%s': not a directory" % notpem),
        ("add_upstream_certs_to_client_chain=maybe", "add_upstream_certs_to_client_chain: 'maybe'"),
        ("upstream_cert=maybe", "upstream_cert: 'maybe'"),
    ]
    for s, want in cases:
        rc, err = run_bad(s)
        assert rc == 2 and want in err and len(err.strip().splitlines()) == 1, (s, rc, err)
    rc, err = run_bad("tls_version_server_min=TLS1_3", "tls_version_server_max=TLS1_2")
    assert rc == 2 and "tls_version_server_min 'TLS1_3' is above tls_version_server_max 'TLS1_2'" in err, err
    # and good values start
    rc, err = run_bad("tls_version_client_min=UNBOUNDED", "ciphers_server=TLS_AES_128_GCM_SHA256",
                      "key_size=2048", "key_type=rsa", "upstream_cert=false")
    assert rc == 0, err


if __name__ == "__main__":
    H.main()
