#!/usr/bin/python3
"""Every option name of mitmproxy 11 and 12 (issue 18): the list, with types
and defaults, is data in test/data/mitmproxy-options-11-12.tsv (read from
mitmproxy's source; this machine has mitmproxy 8.1.1 only, whose names
test_mitmdump_cli.py reads from the installed mitmdump).  The table below
says what mitmlua does with each name: implemented (listed by --options),
an option of the console or web UI (accepted with a one-line warning naming
it), or behaviour mitmlua lacks (accepted at mitmproxy's default, refused
otherwise with a message naming it and exit status 2).  Names in none of
the sets must be implemented."""
import json
import os
import re
import subprocess

import harness as H
from harness import test

DATA = os.path.join(H.ROOT, "test", "data", "mitmproxy-options-11-12.tsv")

# options of mitmproxy's console and web UIs: a warning, then ignored
UI = {"command_history", "content_view_lines_cutoff", "export_preserve_original_ip", "intercept",
      "intercept_active", "view_filter", "view_order", "view_order_reversed"}
UI_PREFIXES = ("console_", "web_")
# behaviour mitmlua does not have: only mitmproxy's default is accepted
UNIMPLEMENTED = {"dns_name_servers", "dns_use_hosts_file",
                 "http3", "normalize_outbound_headers",
                 "protobuf_definitions",
                 "strip_ech", "udp_hosts", "validate_inbound_headers"}


def options():
    """[(name, type, default)] of mitmproxy 11/12."""
    out = []
    for line in H.read(DATA).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, typ, default, _releases, _file = line.split("\t")
        out.append((name, typ, json.loads(default)))
    return out


def is_ui(name):
    return name in UI or name.startswith(UI_PREFIXES)


def kind(name):
    return "ui" if is_ui(name) else "unimplemented" if name in UNIMPLEMENTED else "implemented"


def run(args, home=None, timeout=20):
    if H.IS_MITMDUMP:
        H.skip("mitmlua's answers to mitmproxy 11/12's option names")
    env = dict(os.environ, HOME=home or H.tmpdir("home"))
    return subprocess.run([H.BIN] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def set_default(name, typ, default):
    """--set arguments giving name mitmproxy's default, written as
    mitmproxy's --set takes it (a None or an empty list: the bare name)."""
    if default is None or default == []:
        return ["--set", name]
    if typ == "list":
        return [a for v in default for a in ("--set", "%s=%s" % (name, v))]
    if typ == "bool":
        return ["--set", "%s=%s" % (name, "true" if default else "false")]
    return ["--set", "%s=%s" % (name, default)]


def other_value(typ, default):
    if typ == "bool":
        return "false" if default else "true"
    if typ.startswith("int"):
        return str((default or 0) + 1)
    return "127.0.0.1" if default != "127.0.0.1" else "x"


def errors(r):
    return [l for l in r.stderr.splitlines() if l.strip()]


def ui_warning(name):
    return "warning: %s is an option of mitmproxy's console or web UI" % name


@test
def the_list_is_mitmproxy_11_and_12s():
    opts = options()
    names = [n for n, _, _ in opts]
    assert len(names) == len(set(names)) and len(names) >= 116, len(names)
    # names new in 9-12 and some that 12 added late are in it
    for n in ("http3", "hardump", "strip_ech", "tcp_timeout", "web_password", "console_quickhelp_visible",
              "http_connect_send_host_header", "server_replay_extra", "protobuf_definitions"):
        assert n in names, n
    # the table names only options of the list
    assert (UI | UNIMPLEMENTED) <= set(names), (UI | UNIMPLEMENTED) - set(names)


@test
def implemented_names_are_mitmlua_options():
    r = run(["-n", "--options"])
    assert r.returncode == 0, r.stderr
    listed = set(re.findall(r"^(\w+):", r.stdout, re.M))
    for name, _, _ in options():
        if kind(name) == "implemented":
            assert name in listed, "%s is not implemented (nor in the table of test_mitmproxy_options.py)" % name
        else:
            assert name not in listed, (name, kind(name))


@test(timeout=300)
def every_name_at_its_default_is_accepted():
    bad = []
    for name, typ, default in options():
        r = run(set_default(name, typ, default) + ["-n"])
        errs = errors(r)
        # a UI option: one warning line per --set (web_columns has seven)
        warned = all(ui_warning(name) in e for e in errs) and len(errs) == len(default if typ == "list" else [1])
        ok = warned if is_ui(name) else not errs
        if r.returncode != 0 or not ok:
            bad.append((name, r.returncode, errs))
    assert not bad, "names of mitmproxy 11/12 refused at their default: %r" % bad


@test(timeout=120)
def unimplemented_behaviour_is_refused_away_from_its_default():
    bad = []
    for name, typ, default in options():
        if kind(name) != "unimplemented":
            continue
        r = run(["--set", "%s=%s" % (name, other_value(typ, default)), "-n"])
        errs = errors(r)
        if r.returncode != 2 or len(errs) != 1 or "option %s is not implemented" % name not in errs[0]:
            bad.append((name, r.returncode, errs))
    assert not bad, bad
    # a UI option at any value is only a warning
    r = run(["--set", "web_port=9999", "--set", "console_mouse=false", "-n"])
    assert r.returncode == 0 and len(errors(r)) == 2, r


def yaml_value(typ, default):
    if default is None:
        return "null"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return "[%s]" % ", ".join(default)
    if isinstance(default, str):
        return json.dumps(default)
    return str(default)


@test
def a_config_yaml_of_every_default_is_accepted():
    """A config.yaml that spells out all of mitmproxy 11/12's defaults, as
    its --options prints them (mode as a list, listen_port null)."""
    home = H.tmpdir("home")
    conf = os.path.join(home, "conf")
    os.makedirs(conf)
    opts = options()
    H.write(os.path.join(conf, "config.yaml"),
            "".join("%s: %s\n" % (n, yaml_value(t, d)) for n, t, d in opts if n != "confdir"))
    r = run(["-n", "--confdir", conf], home=home)
    assert r.returncode == 0, r.stderr
    warned = sorted(re.findall(r"warning: (\w+) is an option of mitmproxy's console", r.stderr))
    assert warned == sorted(n for n, _, _ in opts if is_ui(n)), r.stderr
    assert len(errors(r)) == len(warned), r.stderr
    # and the values mean mitmproxy's defaults to mitmlua
    r = run(["-n", "--confdir", conf, "--options"], home=home)
    o = dict(re.findall(r"^(\w+): (.*)$", r.stdout, re.M))
    assert (o["mode"], o["listen_port"], o["onboarding_host"], o["http_connect_send_host_header"]) == \
        ("regular", "8080", "mitm.it", "true"), o


def offline_proxy(*args, label="proxy"):
    """A proxy that connects to no server (a server_connect hook refuses
    every one): a request it forwards gets 502, and nothing leaves the host."""
    s = H.script("offline", lua='function server_connect(data) data.server.error = "offline test" end\n', py="")
    return H.Proxy(["-s", s] + list(args), label=label).start()


def onboarding_served(p, url):
    r = H.curl(url, proxy=p)
    if r.status == 200 and b"BEGIN CERTIFICATE" in r.body:
        return True
    assert r.status == 502 and b"offline test" in r.body, r   # forwarded
    return False


@test
def onboarding_host_and_port():
    H.skip_if_mitmdump("the offline script is Lua")
    p = offline_proxy("--set", "onboarding_host=certs.test")
    assert onboarding_served(p, "http://certs.test/cert/pem")
    assert not onboarding_served(p, "http://mitm.it/cert/pem")   # an ordinary host now
    # mitmproxy 8's onboarding_port: that port only (default: any, as 9+)
    q = offline_proxy("--set", "onboarding_port=80", label="port-80")
    assert onboarding_served(q, "http://mitm.it/cert/pem")
    assert not onboarding_served(q, "http://mitm.it:8000/cert/pem")
    d = offline_proxy(label="any-port")
    assert onboarding_served(d, "http://mitm.it:8000/cert/pem")


if __name__ == "__main__":
    H.main()
