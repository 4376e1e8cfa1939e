"""harness.py — shared machinery of the integration tests.

- PROXY / BIN / ca_name(): which proxy runs the tests.  PROXY=mitmdump runs
  the same tests against Debian's mitmdump (confdir files are named
  mitmproxy-*, scripts are Python) to check the tests themselves.
- free_port(), Proxy (start with a temp confdir, wait until it listens,
  capture stdout/stderr, stop with a signal and return the exit status;
  at the end of each test every proxy it started gets SIGTERM, and its
  exit status and stderr (sanitizer reports) are checked),
  curl() (the real curl), raw() (a raw socket exchange), peer_cert().
- PKI: a test CA and leaf certificates made with the openssl CLI.
- A small TAP runner: @test, skip(), fixture(), main().

Everything talks to 127.0.0.1 / ::1 only and every wait is bounded.
"""
import atexit
import collections
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ROOT = os.environ.get("MITMLUA_ROOT") or os.path.dirname(os.path.dirname(HERE))

PROXY = os.environ.get("PROXY", "mitmlua")
IS_MITMDUMP = PROXY == "mitmdump"
if os.environ.get("MITMLUA_BIN"):
    BIN = os.path.abspath(os.environ["MITMLUA_BIN"])
elif IS_MITMDUMP:
    BIN = shutil.which("mitmdump") or "/usr/bin/mitmdump"
else:
    BIN = os.path.join(ROOT, "build", "mitmlua")
MITMDUMP = shutil.which("mitmdump")
PREFIX = "mitmproxy" if IS_MITMDUMP else "mitmlua"
SCRIPT_EXT = ".py" if IS_MITMDUMP else ".lua"

TMP = tempfile.mkdtemp(prefix="mitmlua-it-")
# Debian's mitmdump (Python) starts slowly; give it room.
START_TIMEOUT = 20 if IS_MITMDUMP else 10


def ca_name(suffix="-ca-cert.pem"):
    """Name of a CA file in the confdir: ca_name() is mitmlua-ca-cert.pem
    (mitmproxy-ca-cert.pem under PROXY=mitmdump); ca_name("-ca.pem") the key."""
    return PREFIX + suffix


def tmpdir(prefix="t"):
    return tempfile.mkdtemp(prefix=prefix + "-", dir=TMP)


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return path


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=5.0, step=0.05):
    """Poll pred() until it returns a true value or timeout; returns it."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def settled(get, timeout=10.0, quiet=0.5, step=0.05):
    """Poll get() until its value has not changed for `quiet` seconds (or
    timeout); returns the last value.  For counters that stop growing
    when back-pressure holds a sender."""
    end = time.monotonic() + timeout
    v, since = get(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(step)
        n = get()
        if n != v:
            v, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return v


def check_backpressure(sent, size, what="the backend"):
    """The server had sent part of a `size`-byte body when the proxy held
    it back: enough that a memory check measures something (at least
    512 KiB went through the proxy's sockets), and well short of all."""
    print("# %s sent %d of %d bytes while the client was not reading" % (what, sent, size))
    assert 512 * 1024 <= sent < size // 2, (
        "%s sent %d of %d bytes while the client was not reading" % (what, sent, size))


# ---- the TAP runner ----------------------------------------------------------

class Skip(Exception):
    pass


class TestTimeout(Exception):
    pass


def skip(reason):
    raise Skip(reason)


def need_mitmdump():
    """Debian's mitmdump, the reference of the differential tests.  Missing
    is a failure, not a skip (`make deps` installs it), and no test falls
    back to mitmlua as its own reference."""
    if not MITMDUMP:
        raise AssertionError("mitmdump, the reference, is not installed (make deps)")
    return MITMDUMP


def skip_if_mitmdump(reason):
    if IS_MITMDUMP:
        raise Skip("mitmdump: " + reason)


_TESTS = []
_SCOPES = [[]]          # proxies to stop: [global, per-test...]
_FIXTURES = {}


def test(fn=None, *, timeout=30, name=None):
    """Register a test function; it fails if it raises or takes > timeout s."""
    def reg(f):
        _TESTS.append((name or f.__name__, f, timeout))
        return f
    return reg(fn) if fn else reg


def fixture(fn):
    """A lazily made value shared by the tests of a file (proxies it starts
    live until the end of the run)."""
    def get():
        if fn not in _FIXTURES:
            _SCOPES.append(_SCOPES[0])
            try:
                _FIXTURES[fn] = (True, fn())
            except Exception as e:
                # fail fast in the following tests instead of waiting again
                _FIXTURES[fn] = (False, e)
                raise
            finally:
                _SCOPES.pop()
        ok, v = _FIXTURES[fn]
        if not ok:
            raise RuntimeError("fixture %s failed earlier: %s" % (fn.__name__, v))
        return v
    get.__name__ = fn.__name__
    return get


def _alarm(signum, frame):
    raise TestTimeout("test timed out")


def main():
    """Run every registered test in order, print TAP, exit 1 on a failure."""
    signal.signal(signal.SIGALRM, _alarm)
    only = set(sys.argv[1:])
    failed = 0
    n = 0
    for name, fn, limit in _TESTS:
        if only and name not in only:
            continue
        n += 1
        scope = []
        _SCOPES.append(scope)
        t0 = time.monotonic()
        status, detail = "ok", None
        signal.alarm(limit)
        try:
            fn()
        except Skip as e:
            status, detail = "skip", str(e)
        except BaseException as e:  # noqa: B902 — report everything, go on
            if isinstance(e, KeyboardInterrupt):
                raise
            status, detail = "fail", traceback.format_exc()
        finally:
            signal.alarm(0)
            _SCOPES.pop()
        if status == "fail":
            for p in scope + _SCOPES[0]:
                detail += p.describe()
        # every proxy the test started ends with SIGTERM, the documented
        # status and no sanitizer report: a problem there fails the test
        # even after its last assert passed
        problems = _finish_all(scope)
        if problems:
            if status != "fail":
                status, detail = "fail", ""
            detail += "\n" + "\n".join(problems)
        dt = time.monotonic() - t0
        if status == "ok":
            print("ok %d - %s" % (n, name))
        elif status == "skip":
            print("ok %d - %s # SKIP %s" % (n, name, detail))
        else:
            failed += 1
            print("not ok %d - %s" % (n, name))
            sys.stderr.write("--- %s failed (%.1fs):\n%s\n" % (name, dt, detail))
        sys.stdout.flush()
        sys.stderr.flush()
    # proxies of fixtures, shared by the file's tests, are checked once
    # at the end, as one more result
    if _SCOPES[0] and not only:
        n += 1
        problems = _finish_all(_SCOPES[0])
        name = "shared proxies stop cleanly (%d)" % len(_SCOPES[0])
        if problems:
            failed += 1
            print("not ok %d - %s" % (n, name))
            sys.stderr.write("--- %s failed:\n%s\n" % (name, "\n".join(problems)))
        else:
            print("ok %d - %s" % (n, name))
    else:
        _finish_all(_SCOPES[0])
    print("1..%d" % n)
    # what the tests registered with atexit (servers they started, an
    # nginx): os._exit below would skip it and leave them running
    atexit._run_exitfuncs()
    # in-process backends (fixtures with a socketserver) stop serving first
    for ok, v in list(_FIXTURES.values()):
        if ok and hasattr(getattr(v, "server", None), "shutdown"):
            try:
                v.stop()
            except Exception:
                pass
    if not os.environ.get("KEEP_TMP"):
        shutil.rmtree(TMP, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the backends' handler threads are daemons, and CPython
    # finalizing while one of them is inside ssl can abort the interpreter
    # (seen once on CI: glibc "double free or corruption" and status 134
    # after all 16 tests of a file had passed).  Nothing is left to clean
    # up: the atexit functions ran above.
    os._exit(1 if failed else 0)


# Reports of AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer
# in a proxy's stderr (the asan build prints them; a plain build never does).
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                          r"runtime error:|WARNING: ThreadSanitizer|"
                          r"SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")
# How long a proxy may take to exit after SIGTERM (it gives open
# connections 2 s; the asan build with leak checking is slower to exit)
STOP_TIMEOUT = 30


# The proxy binary run to completion (-n -r FILE, -C, --options...) rather
# than started as a Proxy: when a test captures its stderr, a sanitizer
# report there fails the call, as it fails a Proxy's end.  subprocess.run
# is wrapped once here so that the test files need not change.
_subprocess_run = subprocess.run


def _checked_run(*args, **kw):
    r = _subprocess_run(*args, **kw)
    argv = args[0] if args else kw.get("args")
    if (isinstance(argv, (list, tuple)) and argv and not IS_MITMDUMP
            and os.path.abspath(str(argv[0])) == BIN and r.stderr):
        text = r.stderr if isinstance(r.stderr, str) else r.stderr.decode("utf-8", "replace")
        m = SANITIZER_RE.search(text)
        if m:
            raise AssertionError("%s reported:\n%s" % (
                " ".join(str(a) for a in argv), text[max(0, m.start() - 200):m.start() + 4000]))
    return r


subprocess.run = _checked_run


def _finish_all(procs):
    problems = []
    for p in list(procs):
        try:
            problems += p.finish()
        except Exception as e:  # noqa: B902 — report it as a problem
            problems.append("%s: checking its end failed: %r" % (p.label, e))
    return problems


# ---- test PKI -------------------------------------------------------------------

def _openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True,
                       timeout=30)
    if r.returncode:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stderr.decode()))


class PKI:
    """A CA made with the openssl CLI, and leaf certificates it signs.
    ca_cert is the PEM file to trust; leaf(...) returns (certfile, keyfile)."""

    def __init__(self, name="mitmlua test CA"):
        self.dir = tmpdir("pki")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.n = 0
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "30",
                 "-subj", "/CN=" + name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def leaf(self, dns=("localhost", "a.test", "b.test"), ips=("127.0.0.1", "::1")):
        self.n += 1
        base = os.path.join(self.dir, "leaf%d" % self.n)
        sans = ",".join(["DNS:" + d for d in dns] + ["IP:" + i for i in ips])
        write(base + ".ext", "[v3]\nsubjectAltName=%s\nbasicConstraints=CA:FALSE\n"
              "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
              "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % sans)
        cn = (list(dns) + list(ips))[0]
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + cn,
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", base + ".csr", "-CA", self.ca_cert,
                 "-CAkey", self.ca_key, "-CAcreateserial", "-days", "30",
                 "-extfile", base + ".ext", "-extensions", "v3", "-out", base + ".pem",
                 cwd=self.dir)
        return base + ".pem", base + ".key"


# ---- the proxy under test -------------------------------------------------------

def syscalls(pid):
    """(reads, writes): the read- and write-family system calls process pid
    (all its threads) has made so far, from /proc/PID/io."""
    with open("/proc/%d/io" % pid) as f:
        io = dict(line.split(": ", 1) for line in f.read().splitlines())
    return int(io["syscr"]), int(io["syscw"])


_SANITIZED = []


def sanitized():
    """True when BIN is the AddressSanitizer build: its allocator keeps
    freed memory in a quarantine, so memory figures say nothing there."""
    if not _SANITIZED:
        with open(BIN, "rb") as f:
            _SANITIZED.append(b"__asan_init" in f.read())
    return _SANITIZED[0]


def minor_faults(pid):
    """Minor page faults of process pid so far (/proc/PID/stat): pages it
    touched for the first time since they were mapped."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


class Proxy:
    """The proxy under test (or any mitmdump-like binary).

    Proxy(args).start() runs `BIN -p PORT --listen-host HOST --confdir DIR
    *args` with stdout/stderr captured to files and waits (bounded) until
    the port accepts connections.  stop() sends SIGTERM (or the signal
    given), waits, kills with SIGKILL after a timeout and returns the exit
    status.  Proxies started inside a test are stopped with SIGTERM after
    it and checked (finish()): exit status expect_rc unless the test read
    the status itself, no sanitizer report in stderr."""

    def __init__(self, args=(), confdir=None, host="127.0.0.1", port=None,
                 binary=None, listen_host_flag=True, label="proxy", expect_rc=0):
        self.args = [str(a) for a in args]
        # the status SIGTERM should end it with (man page, EXIT STATUS);
        # a test whose proxy ends otherwise says so or reads stop()/wait()
        self.expect_rc = expect_rc
        self.rc_seen = False
        self.finished = False
        self.confdir = confdir or os.path.join(tmpdir("conf"), "confdir")
        self.host = host
        self.port = port or free_port(host)
        self.binary = binary or BIN
        self.listen_host_flag = listen_host_flag
        self.label = label
        self.proc = None
        self.rc = None
        d = tmpdir("proxyout")
        self.out_path = os.path.join(d, "stdout")
        self.err_path = os.path.join(d, "stderr")
        _SCOPES[-1].append(self)

    @property
    def is_mitmdump(self):
        return os.path.basename(self.binary).startswith("mitmdump")

    def cmdline(self):
        cmd = [self.binary, "-p", str(self.port)]
        # mitmdump 8.1.1 dropped the --confdir flag our contract keeps
        cmd += (["--set", "confdir=" + self.confdir] if self.is_mitmdump
                else ["--confdir", self.confdir])
        if self.listen_host_flag:
            cmd += ["--listen-host", self.host]
        return cmd + self.args

    def spawn(self):
        if not os.path.exists(self.binary):
            raise RuntimeError("proxy binary %s does not exist (build it, or set "
                               "MITMLUA_BIN)" % self.binary)
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        env = dict(os.environ)
        env.setdefault("HOME", TMP)
        self.proc = subprocess.Popen(self.cmdline(), stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.err, env=env)
        return self

    def start(self, timeout=None):
        self.spawn()
        end = time.monotonic() + (timeout or START_TIMEOUT)
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %s before listening\n%s"
                                   % (self.label, self.proc.returncode, self.describe()))
            try:
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.settimeout(1)
                    s.connect((self.host, self.port))
                return self
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("%s does not listen on port %d after %ss\n%s"
                                   % (self.label, self.port, timeout or START_TIMEOUT,
                                      self.describe()))
            time.sleep(0.05)

    def wait(self, timeout=10):
        """Wait for the process to exit by itself; returns its status."""
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.rc_seen = True
            raise AssertionError("%s did not exit within %ss" % (self.label, timeout))
        self.rc_seen = True
        return self.rc

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the proxy, wait for it to exit, return its exit status
        (negative: killed by that signal).  SIGKILL after timeout."""
        if self.proc is None:
            return None
        # after SIGTERM or SIGINT the status is the documented one (checked
        # at the end of the test against expect_rc); after another signal
        # the test judges it
        self.rc_seen = self.rc_seen or sig not in (signal.SIGTERM, signal.SIGINT)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.rc = self.proc.returncode
                raise AssertionError("%s did not exit within %ss of signal %d"
                                     % (self.label, timeout, sig))
        self.rc = self.proc.returncode
        return self.rc

    def kill(self):
        """SIGKILL: for a test that means it (the end-of-test check then
        takes the status as seen)."""
        self.rc_seen = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def sanitizer_report(self):
        """The first sanitizer report in stderr (with some context), or None."""
        try:
            t = read(self.err_path, "rb").decode("utf-8", "replace")
        except OSError:
            return None
        m = SANITIZER_RE.search(t)
        if not m:
            return None
        start = max(0, t.rfind("\n", 0, max(0, m.start() - 200)))
        return t[start:start + 4000]

    def finish(self, timeout=None):
        """End of the test: SIGTERM if still running (SIGKILL after a
        timeout, which is a problem), then check the exit status against
        expect_rc (unless the test read it through stop() or wait()) and
        stderr for sanitizer reports.  Returns the problems found."""
        if self.finished or self.proc is None:
            return []
        self.finished = True
        problems = []
        what = "%s (%s)" % (self.label, " ".join(self.cmdline()))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout or STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                problems.append("%s did not exit within %ss of SIGTERM: killed"
                                % (what, timeout or STOP_TIMEOUT))
        self.rc = self.proc.returncode
        ours = not self.is_mitmdump
        if ours and not problems and not self.rc_seen and self.rc != self.expect_rc:
            problems.append("%s ended with status %s, not %s" % (what, self.rc, self.expect_rc))
        rep = self.sanitizer_report() if ours else None
        if rep:
            problems.append("%s reported:\n%s" % (what, rep))
        if problems and ours:
            problems.append(self.describe())
        for f in (getattr(self, "out", None), getattr(self, "err", None)):
            if f:
                f.close()
        return problems

    @property
    def url(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (h, self.port)

    @property
    def stdout(self):
        return read(self.out_path, "rb").decode("utf-8", "replace")

    @property
    def stderr(self):
        return read(self.err_path, "rb").decode("utf-8", "replace")

    def wait_output(self, needle, timeout=5, stream="stdout"):
        """Wait until needle (str or compiled regex) shows in the output."""
        def seen():
            text = self.stdout if stream == "stdout" else (
                self.stderr if stream == "stderr" else self.stdout + self.stderr)
            return needle.search(text) if hasattr(needle, "search") else needle in text
        return wait_for(seen, timeout)

    def ca(self, suffix="-ca-cert.pem"):
        prefix = "mitmproxy" if self.is_mitmdump else "mitmlua"
        return os.path.join(self.confdir, prefix + suffix)

    def describe(self):
        s = "\n--- %s: %s (status %s)\n" % (
            self.label, " ".join(self.cmdline()),
            self.proc.poll() if self.proc else "not started")
        for what, p in (("stdout", self.out_path), ("stderr", self.err_path)):
            try:
                t = read(p, "rb").decode("utf-8", "replace")
            except OSError:
                continue
            if t:
                s += "--- %s %s (last 3000 chars):\n%s\n" % (self.label, what, t[-3000:])
        return s

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        # stopped as at the end of a test: SIGTERM; problems are reported
        # when the test ends
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


# ---- clients ----------------------------------------------------------------

class CurlResult(collections.namedtuple(
        "CurlResult", "rc status reason headers blocks body stderr")):
    def __repr__(self):  # failures print it: keep big bodies short
        body = self.body if len(self.body) <= 300 else (
            self.body[:300] + b"... (%d bytes)" % len(self.body))
        return ("CurlResult(rc=%r, status=%r, reason=%r, headers=%r, body=%r, stderr=%r)"
                % (self.rc, self.status, self.reason, self.headers, body, self.stderr[-1500:]))


def _clean_env():
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["HOME"] = TMP  # no ~/.curlrc
    return env


def curl(urls, proxy=None, cacert=None, resolve=(), connect_to=(), method=None,
         data=None, data_file=None, headers=(), args=(), max_time=20,
         verbose=False, http11=True):
    """Run curl; returns CurlResult(rc, status, reason, headers, blocks, body,
    stderr): status/reason/headers of the last response (headers a list of
    (name, value)), every header block, the body bytes (all URLs'
    concatenated), stderr text.  proxy may be a Proxy or a URL."""
    if isinstance(urls, str):
        urls = [urls]
    d = tmpdir("curl")
    hfile = os.path.join(d, "headers")
    cmd = ["curl", "-sS", "--max-time", str(max_time), "-D", hfile]
    if http11:
        cmd.append("--http1.1")
    if proxy is not None:
        cmd += ["-x", proxy.url if isinstance(proxy, Proxy) else proxy]
    else:
        cmd += ["--noproxy", "*"]
    if cacert:
        cmd += ["--cacert", cacert]
    for r in resolve:
        cmd += ["--resolve", r]
    for c in connect_to:
        cmd += ["--connect-to", c]
    if method:
        cmd += ["-X", method]
    if data is not None:
        p = os.path.join(d, "data")
        write(p, data, "wb")
        cmd += ["--data-binary", "@" + p]
    if data_file:
        cmd += ["--data-binary", "@" + data_file]
    for h in headers:
        cmd += ["-H", h]
    if verbose:
        cmd.append("-v")
    cmd += list(args) + list(urls)
    r = subprocess.run(cmd, capture_output=True, timeout=max_time + 10,
                       env=_clean_env())
    try:
        raw = read(hfile, "rb").decode("latin-1")
    except OSError:
        raw = ""
    blocks = []
    for blk in re.split(r"\r?\n\r?\n", raw):
        lines = [l for l in blk.splitlines() if l]
        if not lines or not lines[0].startswith("HTTP/"):
            continue
        first = lines[0].split(" ", 2)
        hdrs = []
        for l in lines[1:]:
            if ":" in l:
                k, v = l.split(":", 1)
                hdrs.append((k, v.strip()))
        blocks.append((int(first[1]), first[2] if len(first) > 2 else "", hdrs))
    status, reason, hdrs = blocks[-1] if blocks else (None, None, [])
    return CurlResult(r.returncode, status, reason, hdrs, blocks, r.stdout,
                      r.stderr.decode("utf-8", "replace"))


def header(headers, name):
    """First value of a header (case-insensitive) in a list of pairs."""
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def rss_kb(pid):
    """Resident set size of a process, in kB (0 when /proc says nothing)."""
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def recv_response_sha256(sock, size):
    """Read one HTTP/1 response of a `size`-byte body from sock without
    keeping the body: (head bytes, body bytes received, sha256 hex)."""
    h, head = hashlib.sha256(), b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    hdr, rest = head.split(b"\r\n\r\n", 1)
    h.update(rest)
    got = len(rest)
    while got < size:
        b = sock.recv(1 << 20)
        if not b:
            break
        h.update(b)
        got += len(b)
    return hdr, got, h.hexdigest()


def raw(host, port, data, timeout=5, half_close=False):
    """Send raw bytes to host:port and read until the peer closes or
    timeout.  Returns (bytes_received, closed_by_peer)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                s.settimeout(max(0.05, end - time.monotonic()))
                b = s.recv(65536)
            except socket.timeout:
                return got, False
            except ConnectionResetError:
                return got, True
            if not b:
                return got, True
            got += b
        return got, False


def status_of(response_bytes):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", response_bytes)
    return int(m.group(1)) if m else None


def nginx(d, http_body, ports):
    """nginx (one worker, in the foreground) with http_body inside its http
    block, its files in directory d; returns the process once every port
    in `ports` accepts connections.  The caller stops it."""
    conf = os.path.join(d, "nginx.conf")
    temps = "".join("    %s_temp_path %s/%s;\n" % (t, d, t)
                    for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # as root, nginx's workers would run as nobody, who cannot read our tmp files
    write(conf, "%sworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
          "events { worker_connections 64; }\nhttp {\n    access_log off;\n%s%s\n}\n"
          % ("user root;\n" if os.geteuid() == 0 else "", d, d, temps, http_body))
    proc = subprocess.Popen(["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf,
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def connects(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    if not all(wait_for(lambda port=p: connects(port), timeout=10) for p in ports):
        proc.kill()
        proc.wait(5)
        raise AssertionError("nginx did not start: %s" % read(os.path.join(d, "error.log")))
    return proc


def peer_cert(proxy, target, sni, cafile, timeout=10):
    """CONNECT target ("host:port") through proxy, do a TLS handshake with
    SNI sni (None: none, e.g. for an IP) verified against cafile with host
    name checking for sni or the target's host.  Returns getpeercert()."""
    with socket.create_connection((proxy.host, proxy.port), timeout=timeout) as s:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(4096)
            if not b:
                raise AssertionError("proxy closed during CONNECT: %r" % buf)
            buf += b
        if status_of(buf) != 200:
            raise AssertionError("CONNECT answered %r" % buf)
        ctx = ssl.create_default_context(cafile=cafile)
        name = sni or target.rsplit(":", 1)[0].strip("[]")
        with ctx.wrap_socket(s, server_hostname=name) as t:
            return t.getpeercert()


def script(name, lua, py):
    """Write a hook script for the proxy under test: Lua normally, the
    Python equivalent under PROXY=mitmdump.  Returns its path."""
    d = tmpdir("script")
    path = os.path.join(d, name + SCRIPT_EXT)
    write(path, py if IS_MITMDUMP else lua)
    return path


def lua_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Conn:
    """A raw HTTP/1.1 client connection (for exchanges curl cannot shape:
    HEAD then GET on one connection, malformed requests...)."""

    def __init__(self, host, port, timeout=10):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("connection closed (buffered %r)" % self.buf[:200])
        self.buf += b

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head=False):
        """Read one response: (status, [(name, value)], body).  1xx
        responses are skipped."""
        while True:
            first = self._line().decode("latin-1")
            hdrs = []
            while True:
                l = self._line()
                if not l:
                    break
                k, v = l.decode("latin-1").split(":", 1)
                hdrs.append((k, v.strip()))
            status = int(first.split(" ")[1])
            if not 100 <= status < 200:
                break
        if head or status in (204, 304):
            return status, hdrs, b""
        if "chunked" in (header(hdrs, "transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, hdrs, body
                body += self._take(size)
                self._take(2)
        cl = header(hdrs, "content-length")
        if cl is not None:
            return status, hdrs, self._take(int(cl))
        while True:
            try:
                self._fill()
            except EOFError:
                body, self.buf = self.buf, b""
                return status, hdrs, body

    def idle(self, wait=0.3):
        """True if nothing more arrives within wait seconds (the peer
        neither sends stray bytes nor closes)."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            self.sock.recv(1, socket.MSG_PEEK)  # data or EOF: not idle
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10)

    def closed(self, wait=5):
        """True if the peer closes within wait seconds (data is discarded)."""
        self.sock.settimeout(wait)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
