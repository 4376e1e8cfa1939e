#!/usr/bin/python3
"""mitmdump's flow-changing options: map_remote (-M), map_local,
modify_headers (-H), modify_body (-B), anticache, anticomp, stickycookie,
stickyauth, block_list (mitmproxy 9+), and CONFDIR/config.yaml, end to end with curl and backend.py.

Also runs against mitmdump (PROXY=mitmdump) where the behaviour is the
same; the differences (Host keeps the port after -M, our error messages)
are marked."""
import base64
import json
import os
import subprocess

import harness as H
from harness import test, fixture
from backend import Backend


@fixture
def pki():
    p = H.PKI()
    p.cert, p.key = p.leaf()
    return p


@fixture
def b1():
    return Backend().start()


@fixture
def b2():
    return Backend().start()


@fixture
def tls1():
    return Backend(tls=(pki().cert, pki().key)).start()


@fixture
def tls2():
    return Backend(tls=(pki().cert, pki().key)).start()


def proxy(*args, confdir=None):
    return H.Proxy(["--set", "ssl_verify_upstream_trusted_ca=" + pki().ca_cert] + list(args),
                   confdir=confdir).start()


def hdr(entry, name):
    vals = [v for k, v in entry["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def last(backend, path):
    for e in reversed(backend.log):
        if e["path"] == path:
            return e
    raise AssertionError("%s never reached the backend: %r" % (path, backend.paths()))


def echo(r):
    assert r.rc == 0 and r.status == 200, r
    return json.loads(r.body)


def run_fail(args, confdir=None):
    """Run the proxy expecting a start-up failure: (status, stderr)."""
    p = H.Proxy(list(args), confdir=confdir)
    p.spawn()
    rc = p.wait(H.START_TIMEOUT)
    return rc, H.read(p.err_path)


# ---- map_remote ----------------------------------------------------------


@test
def map_remote_http_to_second_backend():
    a, b = b1(), b2()
    p = proxy("-M", "|//127.0.0.1:%d/old/|//127.0.0.1:%d/" % (a.port, b.port))
    doc = echo(H.curl(a.url("/old/echo?x=1"), proxy=p))
    # the second backend answered, with the rewritten path
    assert doc["path"] == "/echo?x=1", doc
    e = last(b, "/echo?x=1")
    assert not [x for x in a.paths() if "echo" in x], a.paths()
    host = hdr(e, "Host")
    # the Host header follows the new authority (mitmdump 8.1.1 drops the port)
    assert host == b.netloc or (H.IS_MITMDUMP and host == "127.0.0.1"), host
    # a URL the regex does not match goes where it was sent
    r = H.curl(a.url("/other"), proxy=p)
    assert r.status == 404 and "/other" in a.paths() and "/other" not in b.paths(), (a.paths(), b.paths())


@test
def map_remote_with_filter_and_keep_host_header():
    a, b = b1(), b2()
    spec = "|~h X-Go|127.0.0.1:%d|127.0.0.1:%d" % (a.port, b.port)
    p = proxy("--map-remote", spec, "--set", "keep_host_header=true")
    H.curl(a.url("/echo?go"), proxy=p, headers=["X-Go: 1"])
    e = last(b, "/echo?go")
    # kept as the client sent it; mitmdump 8.1.1 applies keep_host_header to
    # reverse mode only and rewrites Host to the new host (without its port)
    assert hdr(e, "Host") == a.netloc or (H.IS_MITMDUMP and hdr(e, "Host") == "127.0.0.1"), e["headers"]
    H.curl(a.url("/echo?stay"), proxy=p)
    last(a, "/echo?stay")
    assert "/echo?stay" not in b.paths()


@test
def map_remote_http_to_https():
    a, t = b1(), tls1()
    p = proxy("-M", "|^http://127.0.0.1:%d/|https://127.0.0.1:%d/" % (a.port, t.port))
    doc = echo(H.curl(a.url("/echo?tls"), proxy=p))
    assert doc["path"] == "/echo?tls", doc
    last(t, "/echo?tls")
    assert "/echo?tls" not in a.paths()


@test
def map_remote_https_to_other_https_backend():
    t1, t2 = tls1(), tls2()
    p = proxy("-M", "|localhost:%d|127.0.0.1:%d" % (t1.port, t2.port))
    r = H.curl("https://localhost:%d/echo?x" % t1.port, proxy=p, cacert=p.ca())
    doc = echo(r)
    assert doc["path"] == "/echo?x"
    last(t2, "/echo?x")
    assert "/echo?x" not in t1.paths()


# ---- modify_headers ------------------------------------------------------


@test
def modify_headers_with_filter():
    a = b1()
    p = proxy("-H", "|~u only|X-Added|yes", "-H", "/User-Agent/",
              "-H", "|~s|X-Resp|\\x41b", "-H", "|~q|X-Req-Only|1")
    H.curl(a.url("/echo?only"), proxy=p, headers=["X-Added: client"])
    e = last(a, "/echo?only")
    assert hdr(e, "X-Added") == "yes", e["headers"]            # replaced, not added
    assert len([1 for k, v in e["headers"] if k.lower() == "x-added"]) == 1
    assert hdr(e, "User-Agent") is None, e["headers"]          # empty value removes
    assert hdr(e, "X-Req-Only") == "1"
    assert hdr(e, "X-Resp") is None
    r = H.curl(a.url("/echo?other"), proxy=p)
    e = last(a, "/echo?other")
    assert hdr(e, "X-Added") is None, e["headers"]
    # the response side: ~s matches, escapes decoded ("\x41b" is "Ab")
    assert H.header(r.headers, "X-Resp") == "Ab", r.headers
    assert H.header(r.headers, "X-Req-Only") is None, r.headers


@test
def modify_headers_value_from_file():
    a = b1()
    f = os.path.join(H.tmpdir("hv"), "token")
    H.write(f, "Bearer from-file")
    p = proxy("-H", "|Authorization|@" + f)
    H.curl(a.url("/echo?file"), proxy=p)
    assert hdr(last(a, "/echo?file"), "Authorization") == "Bearer from-file"
    # read at each use, as mitmproxy does
    H.write(f, "Bearer changed")
    H.curl(a.url("/echo?file2"), proxy=p)
    assert hdr(last(a, "/echo?file2"), "Authorization") == "Bearer changed"


# ---- modify_body ---------------------------------------------------------


@test
def modify_body_request_and_response():
    a = b1()
    p = proxy("-B", "|~q|hello|bye", "-B", "|~s & ~u /echo|\"method\": \"(\\w+)\"|\"verb\": \"\\\\1\"")
    r = H.curl(a.url("/echo"), proxy=p, data=b"hello world, hello")
    assert r.status == 200, r
    doc = json.loads(r.body)
    # request side: the backend received the rewritten body, with a true Content-Length
    assert base64.b64decode(doc["body"]) == b"bye world, bye", doc
    assert doc["verb"] == "POST" and "method" not in doc, doc
    assert int(H.header(r.headers, "Content-Length")) == len(r.body)


@test
def modify_body_decodes_content_encoding():
    a = b1()
    p = proxy("-B", "|~s|gzip|GZIP")
    r = H.curl(a.url("/gzip"), proxy=p, args=["--compressed"])
    assert r.rc == 0 and r.status == 200, r
    # still gzip on the wire (curl decoded it), the text replaced inside
    assert H.header(r.headers, "Content-Encoding") == "gzip", r.headers
    doc = json.loads(r.body)
    assert doc["text"].startswith("GZIP GZIP"), doc


@test
def modify_body_replacement_from_file():
    a = b1()
    f = os.path.join(H.tmpdir("bv"), "repl")
    H.write(f, "FROM-FILE")
    p = proxy("-B", "|~q|secret|@" + f)
    doc = echo(H.curl(a.url("/echo"), proxy=p, data=b"a secret here"))
    assert base64.b64decode(doc["body"]) == b"a FROM-FILE here", doc


# ---- map_local -----------------------------------------------------------


@fixture
def site():
    d = H.tmpdir("site")
    os.makedirs(os.path.join(d, "sub"))
    H.write(os.path.join(d, "a.txt"), "file a\n")
    H.write(os.path.join(d, "index.html"), "<p>root index</p>\n")
    H.write(os.path.join(d, "sub", "index.html"), "<p>sub index</p>\n")
    H.write(os.path.join(d, "page.json"), "{\"local\": true}\n")
    # a secret next to (outside) the mapped directory
    H.write(os.path.join(os.path.dirname(d), "secret.txt"), "SECRET\n")
    return d


@test
def map_local_file_and_directory():
    a = b1()
    d = site()
    p = proxy("--map-local", "|127.0.0.1:%d/static/|%s" % (a.port, d),
              "--map-local", "|~u /one\\.json|/one\\.json|%s" % os.path.join(d, "page.json"))
    r = H.curl(a.url("/static/a.txt"), proxy=p)
    assert r.status == 200 and r.body == b"file a\n", r
    assert H.header(r.headers, "Content-Type") == "text/plain", r.headers
    r = H.curl(a.url("/static/sub/?q=1"), proxy=p)
    assert r.status == 200 and r.body == b"<p>sub index</p>\n", r
    r = H.curl(a.url("/static/"), proxy=p)
    assert r.status == 200 and r.body == b"<p>root index</p>\n", r
    r = H.curl(a.url("/one.json"), proxy=p)
    assert r.status == 200 and r.body == b"{\"local\": true}\n", r
    assert H.header(r.headers, "Content-Type") == "application/json", r.headers
    # a file that does not exist: 404 from the proxy, not the backend
    r = H.curl(a.url("/static/missing.txt"), proxy=p)
    assert r.status == 404 and r.body == b"", r
    # nothing of this reached the backend
    assert not [x for x in a.paths() if x.startswith("/static") or x == "/one.json"], a.paths()
    # the rest still goes upstream
    assert H.curl(a.url("/echo"), proxy=p).status == 200
    last(a, "/echo")


@test
def map_local_refuses_to_leave_the_directory():
    a = b1()
    d = site()
    p = proxy("--map-local", "|127.0.0.1:%d/static/|%s" % (a.port, d))
    for path in ("/static/..%2fsecret.txt", "/static/sub/..%2f..%2fsecret.txt", "/static/%2e%2e/secret.txt"):
        r = H.curl(a.url(path), proxy=p, args=["--path-as-is"])
        assert b"SECRET" not in r.body, (path, r)
        assert r.status == 404, (path, r)


# ---- anticache, anticomp -------------------------------------------------


@test
def anticomp_and_anticache():
    a = b1()
    p = proxy("--anticomp", "--anticache")
    H.curl(a.url("/echo?c"), proxy=p, headers=["Accept-Encoding: gzip, br", "If-None-Match: \"x\"",
                                               "If-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT"])
    e = last(a, "/echo?c")
    assert hdr(e, "Accept-Encoding") == "identity", e["headers"]
    assert hdr(e, "If-None-Match") is None and hdr(e, "If-Modified-Since") is None, e["headers"]
    # without the options the headers pass untouched
    p2 = proxy()
    H.curl(a.url("/echo?n"), proxy=p2, headers=["Accept-Encoding: gzip", "If-None-Match: \"x\""])
    e = last(a, "/echo?n")
    assert hdr(e, "Accept-Encoding") == "gzip" and hdr(e, "If-None-Match") == "\"x\"", e["headers"]


# ---- stickycookie, stickyauth --------------------------------------------


@test
def stickycookie_replays_cookie():
    a = b1()
    p = proxy("--stickycookie", "~u /echo")
    r = H.curl(a.url("/headers?Set-Cookie=sid%3Dabc%3B%20Path%3D%2F"), proxy=p)
    assert r.status == 200 and H.header(r.headers, "Set-Cookie"), r
    H.curl(a.url("/echo?1"), proxy=p)
    assert hdr(last(a, "/echo?1"), "Cookie") == "sid=abc", last(a, "/echo?1")["headers"]
    # the filter limits where the cookie is added
    H.curl(a.url("/headers?x=1"), proxy=p)
    assert hdr(last(a, "/headers?x=1"), "Cookie") is None
    # an expired cookie is forgotten
    H.curl(a.url("/headers?Set-Cookie=sid%3D%3B%20Max-Age%3D0"), proxy=p)
    H.curl(a.url("/echo?2"), proxy=p)
    assert hdr(last(a, "/echo?2"), "Cookie") is None, last(a, "/echo?2")["headers"]


@test
def stickyauth_replays_authorization():
    a = b1()
    p = proxy("--stickyauth", ".")
    H.curl(a.url("/echo?login"), proxy=p, headers=["Authorization: Basic dTpw"])
    H.curl(a.url("/echo?later"), proxy=p)
    assert hdr(last(a, "/echo?later"), "Authorization") == "Basic dTpw"


# ---- block_list (mitmproxy 9+; not in mitmdump 8.1.1) -----------------------


@test
def block_list_answers_or_kills_matching_requests():
    H.skip_if_mitmdump("mitmdump 8.1.1 has no block_list")
    a = Backend().start()   # its own: the log must hold this test's requests only
    seen = os.path.join(H.tmpdir("block"), "seen")
    s = H.script("seen", lua='''
function request(flow)
  local f = io.open(%s, "a")
  f:write(flow.request.path, " ", tostring(flow.response and flow.response.status_code), " ",
          tostring(flow.metadata.blocklisted), "\\n")
  f:close()
end
''' % H.lua_quote(seen), py="")
    p = proxy("-s", s, "--set", "block_list=|~u /blocked|403", "--set", "block_list=#~u /kill#444")
    r = H.curl(a.url("/blocked/x"), proxy=p)
    assert r.rc == 0 and r.status == 403 and r.body == b"", r
    assert H.header(r.headers, "Server").startswith("mitmlua"), r.headers
    r = H.curl(a.url("/kill"), proxy=p)
    assert r.rc != 0 and r.status is None, r          # no answer at all
    echo(H.curl(a.url("/echo"), proxy=p))
    assert a.paths() == ["/echo"], a.paths()           # the blocked never left
    # the request hook saw the blocked flow answered and marked (the killed
    # one ended before the hooks)
    assert H.read(seen).splitlines() == ["/blocked/x 403 true", "/echo nil nil"], H.read(seen)


@test
def block_list_bad_specs_are_usage_errors():
    H.skip_if_mitmdump("our messages")
    for spec, why in (("/~u x", "expected /flow-filter/status-code"), ("/~u x/404/y", "expected"),
                      ("/~u x/abc", "invalid HTTP status code: abc"), ("/~c x/404", "invalid filter"),
                      ("", "expected")):
        rc, err = run_fail(["--set", "block_list=" + spec])
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "block_list" in lines[0] and why in lines[0], (spec, rc, err)


# ---- bad values ------------------------------------------------------------


@test
def bad_specs_are_usage_errors():
    H.skip_if_mitmdump("our messages")
    cases = [
        (["-M", "|onlyone"], "map_remote: invalid spec '|onlyone' at column 9: expected 2 or 3 parts"),
        (["-H", "|~c abc|X|y"], "modify_headers: invalid spec '|~c abc|X|y' at column 5: invalid filter"),
        (["-B", "|a(|b"], "modify_body: invalid spec '|a(|b' at column 4: invalid regular expression"),
        (["--map-local", "|x|/no/such/dir"], "map_local: invalid spec '|x|/no/such/dir' at column 4: invalid file path"),
        (["--stickycookie", "~c x"], "stickycookie: invalid filter '~c x'"),
        (["--set", "map_remote=|x|\\9"], "map_remote: invalid spec '|x|\\9' at column 4: invalid group reference 9"),
    ]
    for args, want in cases:
        rc, err = run_fail(args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and want in lines[0], (args, rc, err)


# ---- config.yaml -----------------------------------------------------------


def confdir_with(text):
    d = os.path.join(H.tmpdir("cfg"), "confdir")
    os.makedirs(d)
    H.write(os.path.join(d, "config.yaml"), text)
    return d


@test
def config_yaml_sets_options_and_command_line_wins():
    a = b1()
    d = confdir_with(
        "# mitmproxy's format\n"
        "anticomp: true\n"
        "modify_headers:\n"
        "- '|~q|X-Conf|yaml'\n"
        "- \"/X-Second/2\"\n"
        "stickyauth: null\n"
        "flow_detail: 1\n")
    p = proxy(confdir=d)
    H.curl(a.url("/echo?cfg"), proxy=p, headers=["Accept-Encoding: gzip"])
    e = last(a, "/echo?cfg")
    assert hdr(e, "X-Conf") == "yaml" and hdr(e, "X-Second") == "2", e["headers"]
    assert hdr(e, "Accept-Encoding") == "identity", e["headers"]
    # the command line wins for single values; its list items come after
    # the file's (mitmproxy's OptManager.merge appends lists)
    p2 = proxy("-H", "/X-Conf/cli", "--set", "anticomp=false", confdir=d)
    H.curl(a.url("/echo?cli"), proxy=p2, headers=["Accept-Encoding: gzip"])
    e = last(a, "/echo?cli")
    assert [v for k, v in e["headers"] if k == "X-Conf"] == ["yaml", "cli"], e["headers"]
    assert hdr(e, "X-Second") == "2", e["headers"]
    # mitmdump 8.1.1 applies --set before config.yaml, so the file wins there
    assert hdr(e, "Accept-Encoding") == ("identity" if H.IS_MITMDUMP else "gzip"), e["headers"]


@test
def config_yml_is_read_after_config_yaml():
    # mitmproxy loads CONFDIR/config.yaml, then config.yml, the later winning
    a = b1()
    d = confdir_with("modify_headers: ['/X-Conf/yaml']\nanticomp: true\n")
    H.write(os.path.join(d, "config.yml"), "modify_headers: ['/X-Conf/yml']\n")
    p = proxy("-H", "/X-Cli/1", confdir=d)
    H.curl(a.url("/echo?yml"), proxy=p, headers=["Accept-Encoding: gzip"])
    e = last(a, "/echo?yml")
    assert [v for k, v in e["headers"] if k == "X-Conf"] == ["yml"], e["headers"]
    assert hdr(e, "X-Cli") == "1" and hdr(e, "Accept-Encoding") == "identity", e["headers"]


@test
def options_shows_config_values():
    H.skip_if_mitmdump("--options is ours")
    d = confdir_with("anticache: yes\nmap_remote: ['|a|b', \"|c|d\"]\nstickycookie: '~d example.com'\n")
    r = subprocess.run([H.BIN, "--confdir", d, "--options"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    out = r.stdout
    for want in ("anticache: true", "map_remote: [|a|b, |c|d]", "stickycookie: ~d example.com",
                 "anticomp: false", "modify_body: []", "map_local: []"):
        assert want + "\n" in out, (want, out)
    assert "Strip out request headers that might cause the server to return 304" in out


@test
def config_yaml_errors_name_the_line():
    H.skip_if_mitmdump("our messages")
    cases = [
        ("anticomp: true\nno_such_option: 1\n", "config.yaml:2:1: unknown option 'no_such_option'"),
        ("anticomp: maybe\n", "config.yaml:1:1: invalid value for anticomp: 'maybe'"),
        ("map_remote: |x|y\n", "config.yaml:1:14: YAML: "),
        ("listen_port: 1\nmap_remote: just-one\n", "config.yaml:2:1: map_remote: expected a list"),
        ("a b c\n", "config.yaml:1:1: expected 'option: value'"),
        ("map_remote:\n  x: 1\n", "config.yaml:2:3: map_remote: expected a value or a list, not a mapping"),
    ]
    for text, want in cases:
        rc, err = run_fail([], confdir=confdir_with(text))
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and want in lines[0], (text, rc, err)
    # a bad spec that comes from the file is reported like one from -M
    rc, err = run_fail([], confdir=confdir_with("map_remote: ['|x']\n"))
    assert rc == 2 and "map_remote: invalid spec '|x'" in err, err


if __name__ == "__main__":
    H.main()
