#!/usr/bin/python3
"""A mitmdump command line that ports as typed (issue 18): every flag of the
installed `mitmdump --help`, read at test time, is accepted with its
meaning; every option name of `mitmdump --options` is accepted by --set and
config.yaml (mitmdump's own --options output works as a config.yaml); UI
options warn, unimplemented ones are errors naming them away from their
default; -r without -n reads and exits unless keepserving; the trailing
filter sets readfile_filter, save_stream_filter and dumper_filter, which
can be set apart, and hooks see only flows that pass readfile_filter."""
import os
import re
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend


@fixture
def backend():
    return Backend().start()


def mitmdump_text(*args, ok=(0,)):
    md = H.need_mitmdump()
    home = H.tmpdir("home")
    r = subprocess.run([md] + list(args), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HOME=home), stdin=subprocess.DEVNULL)
    assert r.returncode in ok, r.stderr
    return r.stdout


def run(args, timeout=20, home=None):
    """mitmlua to completion, in a HOME of its own (confdir defaults)."""
    if H.IS_MITMDUMP:
        H.skip("mitmlua's answers to mitmdump's flags")
    env = dict(os.environ, HOME=home or H.tmpdir("home"))
    cmd = [H.BIN] + [str(a) for a in args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s still running after %ss" % (cmd, timeout))


def help_flags():
    """(flag, metavar or None) for every flag of `mitmdump --help`: the
    option lines, "  -r PATH, --rfile PATH  help" (prose is not read)."""
    flags = []
    for line in mitmdump_text("--help", ok=(0, 1)).splitlines():
        m = re.match(r"^  (-.*?)(?:\s{2,}|$)", line)
        if not m:
            continue
        for spec in m.group(1).split(", "):
            flag, _, meta = spec.partition(" ")
            if flag not in ("-h", "--help") and flag not in [f for f, _ in flags]:
                flags.append((flag, meta or None))
    return flags


# flags that fail with the placeholder value, with an error naming the
# option: --certs is implemented, and "x" is a file it cannot read
UNIMPLEMENTED = {"--certs": "certs"}


def value_for(flag, meta, files):
    by_flag = {"--set": "flow_detail=1", "--mode": "regular", "-m": "regular", "--listen-port": "0",
               "-p": "0", "--flow-detail": "1", "--key-size": "2048", "--proxyauth": "u:p",
               "--upstream-auth": "u:p", "--scripts": files["lua"], "-s": files["lua"],
               "--rfile": files["har"], "-r": files["har"], "--client-replay": files["har"],
               "-C": files["har"], "--server-replay": files["har"], "-S": files["har"],
               "--save-stream-file": files["out"], "-w": files["out"], "--listen-host": "127.0.0.1"}
    by_flag["--map-local"] = "|example|" + os.path.dirname(files["lua"])
    if flag in by_flag:
        return by_flag[flag]
    return {"HOST": r"example\.com", "FILTER": "~q", "PATTERN": "/a/b/c", "SPEC": "x", "PASS": "x",
            "PATH": files["har"]}.get(meta.strip("[]"), "x")


@test(timeout=240)
def every_mitmdump_help_flag_is_accepted():
    flags = help_flags()
    names = [f for f, _ in flags]
    for must in ("--proxyauth", "--ignore-hosts", "--allow-hosts", "--showhost", "--no-http2",
                 "--server-replay-nopop", "--server-replay-kill-extra", "--anticache", "--rfile", "-r"):
        assert must in names, (must, names)
    d = H.tmpdir("flags")
    files = {"lua": os.path.join(d, "s.lua"), "har": os.path.join(d, "e.har"),
             "out": os.path.join(d, "out.mitmlua")}
    H.write(files["lua"], "-- nothing\n")
    H.write(files["har"], '{"log": {"version": "1.2", "entries": []}}')
    bad = []
    for flag, meta in flags:
        args = [flag] + ([value_for(flag, meta, files)] if meta else [])
        # -n last: --server must not leave a proxy running
        r = run(args + ["-n"])
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        if flag in UNIMPLEMENTED:
            if r.returncode != 2 or len(errs) != 1 or UNIMPLEMENTED[flag] not in errs[0]:
                bad.append((flag, r.returncode, r.stderr))
        elif r.returncode != 0 or "unknown option" in r.stderr:
            bad.append((flag, r.returncode, r.stderr))
    assert not bad, "flags of mitmdump --help that mitmlua refuses: %r" % bad


def options_of(args):
    r = run(list(args) + ["-n", "--options"])
    assert r.returncode == 0, r.stderr
    return dict(re.findall(r"^(\w+): (.*)$", r.stdout, re.M))


@test
def flags_mean_what_mitmdump_means():
    o = options_of(["--no-http2", "--showhost", "--ignore-hosts", "a", "--ignore-hosts", "b",
                    "--allow-hosts", "c", "--server-replay-nopop", "--server-replay-kill-extra",
                    "--no-server-replay-refresh", "--anticache", "--anticomp", "--proxyauth", "u:p",
                    "--upstream-auth", "x:y", "--tcp-hosts", "t", "--keepserving", "-k"])
    want = {"http2": "false", "showhost": "true", "ignore_hosts": "[a, b]", "allow_hosts": "[c]",
            "server_replay_nopop": "true", "server_replay_kill_extra": "true",
            "server_replay_refresh": "false", "anticache": "true", "anticomp": "true",
            "proxyauth": "u:p", "upstream_auth": "x:y", "tcp_hosts": "[t]", "keepserving": "true",
            "ssl_insecure": "true"}
    assert {k: o.get(k) for k in want} == want, o
    # the --no-X of a pair undoes its --X; --set NAME=toggle flips; --set NAME
    # empties a list and unsets a string, as mitmproxy's --set does
    o = options_of(["--showhost", "--no-showhost", "--set", "http2=toggle", "--ignore-hosts", "a",
                    "--set", "ignore_hosts", "--proxyauth", "u:p", "--set", "proxyauth"])
    assert (o["showhost"], o["http2"], o["ignore_hosts"], o["proxyauth"]) == ("false", "false", "[]", ""), o


@test
def proxyauth_flag_guards_the_proxy():
    if H.IS_MITMDUMP:
        H.skip("same flag, checked against mitmlua")
    p = H.Proxy(["--proxyauth", "alice:pw"]).start()
    r = H.curl(backend().url("/bytes/10"), proxy=p)
    assert r.status == 407, r
    r = H.curl(backend().url("/bytes/10"), proxy="http://alice:pw@127.0.0.1:%d" % p.port)
    assert r.status == 200, r


@test(timeout=120)
def every_mitmdump_option_name_is_accepted():
    text = mitmdump_text("--options")
    names = re.findall(r"^(\w+):", text, re.M)
    assert len(names) > 60, names
    # mitmdump's own --options output, defaults and comments, is a config.yaml
    home = H.tmpdir("home")
    conf = os.path.join(home, "conf")
    os.makedirs(conf)
    H.write(os.path.join(conf, "config.yaml"), text)
    r = run(["-n", "--confdir", conf], home=home)
    assert r.returncode == 0, r.stderr
    warned = sorted(re.findall(r"warning: (\w+) is an option of mitmproxy's console", r.stderr))
    assert warned == ["command_history", "content_view_lines_cutoff", "export_preserve_original_ip"], r.stderr
    # and each name alone with --set: accepted or a warning, never "unknown"
    for n in names:
        r = run(["--set", n, "-n"])
        assert "unknown option" not in r.stderr, (n, r.stderr)
        assert r.returncode in (0, 2), (n, r.returncode, r.stderr)
        if r.returncode == 2:
            assert n in r.stderr and "expected" in r.stderr or "not implemented" in r.stderr, (n, r.stderr)


@test
def unimplemented_options_are_errors_naming_them():
    # (the TLS options are implemented: test_tls_options.py)
    for args, name in ((["--set", "http3=false"], "http3"),
                       (["--set", "validate_inbound_headers=false"], "validate_inbound_headers"),
                       (["--set", "strip_ech=false"], "strip_ech")):
        r = run(args + ["-n"])
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 2 and len(errs) == 1 and name in errs[0] and "not implemented" in errs[0], (args, r)
    # at the default they are accepted; a UI option warns and is ignored
    r = run(["-n", "--set", "key_size=2048", "--set", "rawtcp=true", "--set", "web_port=9000",
             "--set", "console_layout=single"])
    assert r.returncode == 0, r.stderr
    assert "web_port" in r.stderr and "console_layout" in r.stderr, r.stderr
    # in config.yaml too
    home = H.tmpdir("home")
    conf = os.path.join(home, "conf")
    os.makedirs(conf)
    H.write(os.path.join(conf, "config.yaml"), "flow_detail: 2\nhttp3: false\n")
    r = run(["-n", "--confdir", conf], home=home)
    assert r.returncode == 2 and "http3" in r.stderr, r


@fixture
def recording():
    """Two flows, /a and /b, recorded with -w."""
    if H.IS_MITMDUMP:
        H.skip("mitmlua's dump format")
    path = os.path.join(H.tmpdir("rec"), "flows.mitmlua")
    p = H.Proxy(["-w", path], label="rec").start()
    for u in ("/bytes/10?x=a", "/bytes/20?x=b"):
        assert H.curl(backend().url(u), proxy=p).status == 200
    assert p.stop() == 0, p.stderr
    return path


def hook_log_script():
    d = H.tmpdir("hook")
    log = os.path.join(d, "seen")
    lua = os.path.join(d, "seen.lua")
    H.write(lua, 'function response(flow)\n  local f = io.open(%s, "a")\n'
                 '  f:write(flow.request.path, "\\n")\n  f:close()\nend\n' % H.lua_quote(log))
    return lua, log


def seen(log):
    return H.read(log).split() if os.path.exists(log) else []


@test
def rfile_without_n_reads_and_exits():
    path = recording()
    r = run(["-p", "0", "-r", path])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("<< 200") == 2, r.stdout
    assert "listening" not in r.stderr, r.stderr


@test
def rfile_with_keepserving_keeps_serving():
    path = recording()
    p = H.Proxy(["-r", path, "--set", "keepserving=true"]).start()
    H.wait_for(lambda: p.stdout.count("<< 200") == 2)
    r = H.curl(backend().url("/bytes/5"), proxy=p)
    assert r.status == 200, r


@test
def client_replay_without_n_ends_with_the_replay():
    path = recording()
    n = len(backend().log)
    # spawned, not started: the replay may be over (and the proxy gone)
    # before a wait for its port would see it listen
    p = H.Proxy(["-C", path]).spawn()
    assert p.wait(20) == 0, p.stderr
    assert len(backend().log) == n + 2, backend().log


@test
def server_replay_ends_when_every_response_was_served():
    path = recording()
    p = H.Proxy(["-S", path]).start()
    for u in ("/bytes/10?x=a", "/bytes/20?x=b"):
        r = H.curl(backend().url(u), proxy=p)
        assert r.status == 200 and len(r.body) in (10, 20), r
    assert p.wait(10) == 0, p.stderr
    # keepserving, or a response that may be served again and again, keep it up
    for extra in (["--set", "keepserving=true"], ["--server-replay-nopop"]):
        p = H.Proxy(["-S", path] + extra).start()
        for u in ("/bytes/10?x=a", "/bytes/20?x=b"):
            assert H.curl(backend().url(u), proxy=p).status == 200
        assert H.curl(backend().url("/bytes/3"), proxy=p).status == 200


@test
def trailing_filter_sets_the_three_filters():
    path = recording()
    lua, log = hook_log_script()
    out = os.path.join(H.tmpdir("o"), "out.mitmlua")
    r = run(["-n", "-r", path, "-s", lua, "-w", out, "~s", "&", "~u", "x=a"])
    assert r.returncode == 0, r.stderr
    assert seen(log) == ["/bytes/10?x=a"], seen(log)          # readfile_filter: hooks
    assert "x=a" in r.stdout and "x=b" not in r.stdout, r.stdout  # dumper_filter
    r = run(["-n", "-r", out])
    assert "x=a" in r.stdout and "x=b" not in r.stdout, r.stdout  # save_stream_filter


@test
def the_three_filters_set_apart():
    path = recording()
    lua, log = hook_log_script()
    out = os.path.join(H.tmpdir("o"), "out.mitmlua")
    r = run(["-n", "-r", path, "-s", lua, "-w", out, "--set", "dumper_filter=~u x=b",
             "--set", "save_stream_filter=~u x=a"])
    assert r.returncode == 0, r.stderr
    assert seen(log) == ["/bytes/10?x=a", "/bytes/20?x=b"], seen(log)
    assert "x=b" in r.stdout and "x=a" not in r.stdout, r.stdout
    r = run(["-n", "-r", out])
    assert "x=a" in r.stdout and "x=b" not in r.stdout, r.stdout
    lua2, log2 = hook_log_script()
    r = run(["-n", "-r", path, "-s", lua2, "--set", "readfile_filter=~u x=b"])
    assert seen(log2) == ["/bytes/20?x=b"], seen(log2)
    assert "x=b" in r.stdout and "x=a" not in r.stdout, r.stdout
    r = run(["-n", "-r", path, "--set", "readfile_filter=~bogus"])
    assert r.returncode == 2 and "readfile_filter" in r.stderr, r


def connection_lines(text, client_port, backend_port):
    out = set()
    for l in text.splitlines():
        # mitmlua's log lines carry their level, on stderr; mitmdump's not
        l = re.sub(r"^\[debug\] ", "", l)
        if l.startswith("127.0.0.1:%d: " % client_port) and re.search(r": (client|server) (connect|disconnect)", l):
            out.add(l.replace(":%d:" % client_port, ":CLIENT:").replace(str(backend_port), "BACKEND").strip())
    return out


@test(timeout=60)
def verbose_prints_connection_lines_as_mitmdump():
    if H.IS_MITMDUMP:
        H.skip("a differential test runs both programs itself")
    md = H.need_mitmdump()
    b = backend()
    seen = []
    for binary in (md, H.BIN):
        p = H.Proxy(["-v"], binary=binary, label=os.path.basename(binary)).start()
        r = H.curl("http://localhost:%d/bytes/7" % b.port, proxy=p, args=["--local-port", "0"])
        assert r.status == 200, r
        H.wait_for(lambda: "server disconnect" in p.stdout + p.stderr, 10)
        H.wait_for(lambda: (p.stdout + p.stderr).count("client disconnect") >= 2, 10)
        text = p.stdout + p.stderr
        m = re.search(r"(?m)^127\.0\.0\.1:(\d+): GET ", text)
        assert m, text
        seen.append((connection_lines(text, int(m.group(1)), b.port), text))
    (want, wtext), (got, gtext) = seen
    assert want == {"127.0.0.1:CLIENT: client connect", "127.0.0.1:CLIENT: client disconnect",
                    "127.0.0.1:CLIENT: server connect localhost:BACKEND (127.0.0.1:BACKEND)",
                    "127.0.0.1:CLIENT: server disconnect localhost:BACKEND (127.0.0.1:BACKEND)"}, (want, wtext)
    assert got == want, (got, gtext)
    # and -v prints headers, as mitmdump's does (flow_detail 2)
    assert "    User-Agent: curl" in gtext, gtext


@test(timeout=120)
def make_install_honours_prefix_and_installs_three_man_pages():
    if H.IS_MITMDUMP:
        H.skip("mitmlua's Makefile")
    root = os.environ.get("MITMLUA_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    build = os.path.relpath(os.path.dirname(os.path.abspath(H.BIN)), root)
    dest = H.tmpdir("destdir")
    r = subprocess.run(["make", "-s", "-C", root, "install", "BUILD=" + build, "PREFIX=/opt/mitmlua",
                        "DESTDIR=" + dest], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    for f in ("bin/mitmlua", "share/man/man1/mitmlua.1", "share/man/man5/mitmlua-dump.5",
              "share/man/man7/mitmlua-filter.7"):
        assert os.path.isfile(os.path.join(dest, "opt/mitmlua", f)), (f, r.stdout)
    assert os.access(os.path.join(dest, "opt/mitmlua/bin/mitmlua"), os.X_OK)


if __name__ == "__main__":
    H.main()
