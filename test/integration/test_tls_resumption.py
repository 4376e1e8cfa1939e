#!/usr/bin/python3
"""TLS handshakes made cheaper (issue 19): minted certificates on an ECDSA
P-256 key by default (key_type=rsa for RSA), sessions resumed by clients
(session IDs and tickets, TLS 1.2 and 1.3, openssl s_client's -sess_out /
-sess_in), and sessions resumed towards servers: the second connection to
an nginx resumes (the proxy says so at -v), other servers do not share
sessions, and a server that comes back with a certificate we do not trust
is refused although a session for it is cached."""
import atexit
import os
import re
import subprocess

import harness as H
from harness import test, fixture

RESUMED = "server TLS session resumed: localhost:%d"


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


class Nginx:
    """nginx on one port per TLS version ("tls12", "tls13"), restartable
    with another certificate on the same ports (new ticket keys too, as
    after any restart without ssl_session_ticket_key)."""

    def __init__(self):
        self.d = H.tmpdir("nginx")
        self.ports = {"tls12": H.free_port(), "tls13": H.free_port()}
        self.proc = None
        atexit.register(self.stop)

    def start(self, cert, key):
        server = """
    server {
        listen 127.0.0.1:%d ssl;
        ssl_protocols %s;
        location / { return 200 "reused=$ssl_session_reused\\n"; }
    }"""
        body = ("    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_session_cache shared:s:1m;"
                % (cert, key) + server % (self.ports["tls12"], "TLSv1.2") + server % (self.ports["tls13"], "TLSv1.3"))
        self.proc = H.nginx(self.d, body, self.ports.values())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def trusting(*args, **kw):
    return H.Proxy(["-v", "--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert] + list(args), **kw).start()


def get(p, port):
    return H.curl("https://localhost:%d/" % port, proxy=p, cacert=p.ca())


def log_of(p):
    return p.stdout + p.stderr


# ---- towards servers ----------------------------------------------------------

@test(timeout=90)
def second_connection_to_a_server_resumes():
    H.skip_if_mitmdump("mitmdump resumes no sessions towards servers")
    n = Nginx().start(pki().cert, pki().key)
    p = trusting()
    for which in ("tls13", "tls12"):
        port = n.ports[which]
        # each curl is a new client connection, so a new server connection
        r = get(p, port)
        assert r.rc == 0 and r.status == 200 and r.body == b"reused=.\n", (which, r)
        assert RESUMED % port not in log_of(p), (which, log_of(p))
        r = get(p, port)
        assert r.rc == 0 and r.status == 200 and r.body == b"reused=r\n", (which, r)  # nginx's word
        assert H.wait_for(lambda: RESUMED % port in log_of(p), 5), (which, log_of(p))
        # and the third: a resumed connection leaves a session to resume
        # (TLS 1.2 brings no new one: the kept one must stay good)
        r = get(p, port)
        assert r.rc == 0 and r.status == 200 and r.body == b"reused=r\n", (which, r)
    n.stop()


@test(timeout=90)
def changed_server_certificate_is_still_verified():
    """A session cached for localhost:PORT; the server restarts with a
    certificate from a CA we do not trust: refused (502, the verification
    error), not resumed.  Back with a trusted certificate: served again."""
    H.skip_if_mitmdump("mitmdump resumes no sessions towards servers")
    n = Nginx().start(pki().cert, pki().key)
    p = trusting()
    port = n.ports["tls13"]
    for _ in range(2):
        r = get(p, port)
        assert r.rc == 0 and r.status == 200, r
    assert H.wait_for(lambda: RESUMED % port in log_of(p), 5), log_of(p)
    n.stop()
    other = H.PKI("untrusted test CA")
    n.start(*other.leaf())
    before = log_of(p).count(RESUMED % port)
    r = get(p, port)
    assert r.status == 502 and b"certificate verification failed" in r.body, r
    assert log_of(p).count(RESUMED % port) == before, log_of(p)
    n.stop()
    n.start(*pki().leaf())  # a new certificate the CA vouches for
    r = get(p, port)
    assert r.rc == 0 and r.status == 200 and r.body == b"reused=.\n", r
    n.stop()


@test(timeout=90)
def sessions_are_kept_per_server_and_verification():
    """Another port of the same host is another server: no shared session.
    With -k the proxy still resumes (its own context, its own sessions)."""
    H.skip_if_mitmdump("mitmdump resumes no sessions towards servers")
    n = Nginx().start(pki().cert, pki().key)
    p = trusting()
    r = get(p, n.ports["tls13"])
    assert r.status == 200, r
    r = get(p, n.ports["tls12"])
    assert r.status == 200 and r.body == b"reused=.\n", r
    k = H.Proxy(["-v", "-k"], label="insecure").start()
    for want in (b"reused=.\n", b"reused=r\n"):
        r = get(k, n.ports["tls12"])
        assert r.status == 200 and r.body == want, r
    n.stop()


# ---- towards clients -----------------------------------------------------------

def s_client(p, target, *args, sess_in=None, sess_out=None, cafile=None):
    """openssl s_client through the proxy's CONNECT; sends one request and
    reads the answer, so that TLS 1.3 tickets arrive before it ends.  Its
    exit status says little (a close without close_notify is an error to
    it): the caller reads the output."""
    cmd = ["openssl", "s_client", "-proxy", "%s:%d" % (p.host, p.port), "-connect", target,
           "-servername", target.rsplit(":", 1)[0], "-ign_eof"] + list(args)
    if cafile:
        cmd += ["-CAfile", cafile, "-verify_return_error"]
    if sess_in:
        cmd += ["-sess_in", sess_in]
    if sess_out:
        cmd += ["-sess_out", sess_out]
    r = subprocess.run(cmd, input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace")


@test(timeout=90)
def clients_resume_sessions_with_the_proxy():
    n = Nginx().start(pki().cert, pki().key)
    p = H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]).start()
    target = "localhost:%d" % n.ports["tls13"]
    # TLS 1.3 tickets, TLS 1.2 tickets, TLS 1.2 session IDs (the proxy's cache)
    for version in (["-tls1_3"], ["-tls1_2"], ["-tls1_2", "-no_ticket"]):
        sess = os.path.join(H.tmpdir("sess"), "s.pem")
        rc, out = s_client(p, target, *version, sess_out=sess, cafile=p.ca())
        assert "Verification: OK" in out and "\nNew, " in out and "200 OK" in out, (version, out)
        assert os.path.getsize(sess) > 0, version
        rc, out = s_client(p, target, *version, sess_in=sess, cafile=p.ca())
        assert "\nReused, " in out and "200 OK" in out, (version, out)
    n.stop()


# ---- minted certificates' key ---------------------------------------------------

def peer_key_text(p, target):
    """The proxy's certificate for target, as `openssl x509 -text`."""
    rc, out = s_client(p, target, "-showcerts")
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    assert pem, out
    r = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem.group(0).encode(),
                       capture_output=True, timeout=20)
    return r.stdout.decode()


@test(timeout=60)
def minted_keys_ecdsa_by_default_rsa_on_request():
    H.skip_if_mitmdump("mitmdump's leaves are RSA")
    n = Nginx().start(pki().cert, pki().key)
    target = "localhost:%d" % n.ports["tls13"]
    trust = ["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert]
    text = peer_key_text(H.Proxy(trust, label="default").start(), target)
    assert "id-ecPublicKey" in text and "prime256v1" in text, text
    assert "Key Encipherment" not in text, text  # an EC key enciphers nothing
    text = peer_key_text(H.Proxy(trust + ["--set", "key_type=rsa"], label="rsa").start(), target)
    assert "rsaEncryption" in text and "Public-Key: (2048 bit)" in text, text
    assert "Key Encipherment" in text, text
    # TLS 1.2 with an ECDSA leaf: an ECDHE-ECDSA suite
    rc, out = s_client(H.Proxy(trust, label="tls12").start(), target, "-tls1_2")
    assert "Cipher is ECDHE-ECDSA-" in out, out
    n.stop()


if __name__ == "__main__":
    H.main()
