#!/usr/bin/python3
"""The HTML report (--set report=FILE): flows recorded through the proxy
(live, and again from the dump with -n -r), the page opened from file:// in
headless Chromium (Debian's chromium + chromium-driver, driven by
python3-selenium: missing ones are a failure), its summary, a flow's
headers and JSON body, the search, and recorded bodies, headers and URLs
that try to break out of the page running nothing.  A screenshot and the
page itself are kept under build/test-output/ (the path is printed)."""
import http.client
import json
import os
import shutil
import subprocess
import time

import harness as H
from harness import test, fixture
from backend import Backend
import traffic_shapes as T

OUT = os.environ.get("TEST_OUTPUT") or os.path.join(H.ROOT, "build", "test-output", "test_report")

# What a hostile server (or client) could put in a recording: each tries to
# close the data block, start a script, or add markup.
EVIL = ("</script><script>document.title='pwned';window.PWNED=1;alert(1)</script>"
        "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
        "<!--<script>alert(2)</script>\u2028\u2029")
EVIL_URL = "/echo/</script><script>alert(3)</script>?q=<img/src/onerror=alert(4)>"
# a 1x1 PNG
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201"
                    "e527de4f0000000049454e44ae426082")

LUA = r'''
local EVIL = %s
local PNG = %s
function request(flow)
  if flow.request.path == "/evil" then
    flow.response = mitm.response(200, {["Content-Type"] = "text/html; charset=utf-8",
                                        ["X-Evil"] = EVIL},
                                  "<!doctype html><html><body><h1>hi</h1>" .. EVIL .. "</body></html>")
  elseif flow.request.path == "/img" then
    flow.response = mitm.response(200, {["Content-Type"] = "image/png"}, PNG)
  end
end
'''


def lua_bytes(b):
    return '"' + "".join("\\%d" % c for c in b) + '"'


def only_mitmlua():
    if H.IS_MITMDUMP:
        H.skip("the HTML report is mitmlua's")


def through(proxy, requests):
    """Send (method, path, headers, body) requests on one keep-alive
    connection through the proxy; returns the statuses (None: no answer)."""
    statuses = []
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for method, url, headers, body in requests:
        try:
            conn.request(method, url, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        except (http.client.HTTPException, OSError):
            statuses.append(None)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.close()
    return statuses


@fixture
def backend():
    return Backend().start()


class Recording:
    pass


@fixture
def recording():
    """Ten flows of every kind, recorded live with -w and report=, then the
    report made again from the dump."""
    d = H.tmpdir("report")
    rec = Recording()
    rec.dump = os.path.join(d, "flows.mitmlua")
    rec.live = os.path.join(d, "live.html")
    rec.page = os.path.join(d, "report.html")
    script = H.script("evil", LUA % (lua_bytes(EVIL.encode()), lua_bytes(PNG)), "")
    pki = H.PKI()
    cert, key = pki.leaf()
    tls = Backend(tls=(cert, key)).start()
    p = H.Proxy(["-q", "-s", script, "-w", rec.dump, "--set", "report=" + rec.live,
                 "--set", "fail_on=~c 500", "--set", "ssl_verify_upstream_trusted_ca=" + pki.ca_cert],
                expect_rc=3).start()
    b = backend().url("")
    js = {"Content-Type": "application/json"}
    rec.statuses = through(p, [
        ("GET", b + "/echo/json?x=1", {"X-Test": "hello report"}, None),
        ("POST", b + "/echo/form", {"Content-Type": "application/x-www-form-urlencoded"}, "a=1&b=two+words"),
        ("POST", b + "/echo/api", js, json.dumps({"user": "ada", "n": 3})),
        ("GET", b + "/status/404", {}, None),
        ("GET", b + "/status/500", {}, None),
        ("GET", b + "/gzip", {"Accept-Encoding": "gzip"}, None),
        ("GET", b + "/bytes/300", {}, None),
        ("GET", b + "/evil", {"X-Evil-Request": EVIL.replace("\u2028", "").replace("\u2029", "")}, None),
        ("GET", b + EVIL_URL, {}, None),
        ("GET", b + "/img", {}, None),
        ("GET", b + "/drop", {}, None),
    ])
    r = H.curl(tls.url("/echo/tls"), proxy=p, cacert=os.path.join(p.confdir, H.ca_name()))
    rec.statuses.append(r.status)
    tls.stop()
    assert p.stop() == 3, "fail_on matched: status 3"
    r = subprocess.run([H.BIN, "-n", "-q", "-r", rec.dump, "--set", "report=" + rec.page],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    rec.n = len(rec.statuses)
    return rec


class Browser:
    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        o = webdriver.ChromeOptions()
        o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                  options=o)
        self.d.set_page_load_timeout(30)
        # the harness stops fixtures that have a .server at the end of the
        # file: that is when the browser goes
        self.server = self

    def shutdown(self):
        pass

    def stop(self):
        self.d.quit()

    def open(self, path):
        from selenium.webdriver.common.by import By
        self.d.get("file://" + path)
        assert H.wait_for(lambda: self.d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1",
                          timeout=10), "the page's script did not finish: %s" % self.logs()
        return self

    def logs(self):
        return self.d.get_log("browser")

    def text(self, css):
        from selenium.webdriver.common.by import By
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def find(self, css):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def search(self, q):
        from selenium.webdriver.common.keys import Keys
        box = self.find("#search")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(Keys.DELETE)
        if q:
            box.send_keys(q)
        want = q
        assert H.wait_for(lambda: self.d.execute_script("return document.getElementById('search').value") == want)
        time.sleep(0.4)   # the search waits for typing to pause

    def click_row(self, needle):
        for r in self.find("#spacer .row"):
            if needle in r.text:
                r.click()
                assert H.wait_for(lambda: self.find("#detail.open")), "no detail pane"
                return
        raise AssertionError("no row with %r in %r" % (needle, [r.text for r in self.find("#spacer .row")]))

    def no_alert(self):
        from selenium.common.exceptions import NoAlertPresentException
        try:
            a = self.d.switch_to.alert
            text = a.text
            a.dismiss()
        except NoAlertPresentException:
            return True
        raise AssertionError("an alert ran: %r" % text)


@fixture
def browser():
    only_mitmlua()
    for tool in ("chromium", "chromedriver"):
        assert shutil.which(tool), "%s is missing: make deps installs chromium and chromium-driver" % tool
    try:
        import selenium  # noqa: F401
    except ImportError:
        raise AssertionError("python3-selenium is missing: make deps installs it")
    b = Browser()
    return b


@test
def report_written_live_and_from_the_dump():
    only_mitmlua()
    rec = recording()
    assert rec.statuses[:10] == [200, 200, 200, 404, 500, 200, 200, 200, 200, 200], rec.statuses
    assert rec.statuses[10:] == [502, 200], rec.statuses   # /drop: the proxy answers 502
    for path in (rec.live, rec.page):
        html = H.read(path)
        # only the page's own three script blocks: nothing recorded closes one
        assert html.count("</script>") == 3, html.count("</script>")
        assert "<script>alert" not in html and "\u2028" not in html and "\u2029" not in html
        assert "Content-Security-Policy" in html and "script-src 'sha256-" in html
        assert "default-src 'none'" in html and "unsafe-inline" not in html
        assert "http://" not in html.split('id="mitmlua-meta"')[0].replace("http-equiv", ""), \
            "the page loads nothing from the network"
    # the trailing filter limits what goes in, and the page says which
    page = os.path.join(os.path.dirname(rec.page), "filtered.html")
    r = subprocess.run([H.BIN, "-n", "-q", "-r", rec.dump, "--set", "report=" + page, "~c 500 | ~c 404"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    meta = json.loads(H.read(page).split('id="mitmlua-meta">')[1].split("</script>")[0])
    assert meta["flows"] == 2 and meta["filter"] == "~c 500 | ~c 404", meta


@test(timeout=60)
def summary_figures():
    rec = recording()
    b = browser().open(rec.page)
    assert b.text("#sum-flows .v") == str(rec.n), b.text("#summary")
    assert b.text("#sum-errors .v") == "1", b.text("#summary")
    assert b.text("#sum-2xx .v") == "9", b.text("#summary")
    assert b.text("#sum-4xx .v") == "1" and b.text("#sum-5xx .v") == "1", b.text("#summary")
    assert b.text("#sum-none .v") == "1", b.text("#summary")
    # the hosts table: one host, all flows, its error and statuses
    rows = [" ".join(r.text.split()) for r in b.find("#hosttable tr")]
    assert len(rows) == 2 and rows[1].startswith("127.0.0.1 %d 1 1 1" % rec.n), rows
    # failed flows first: the error and the 5xx, then the 4xx
    failed = b.text("#failed")
    assert "/drop" in failed and "/status/500" in failed and "/status/404" in failed, failed
    assert b.find("#timeline")[0].size["height"] > 50
    # the live page says fail_on and marks its match
    b.open(rec.live)
    assert b.text("#sum-failon .v") == "1", b.text("#summary")
    assert "matched fail_on" in b.text("#banners")
    b.search("is:fail_on")
    assert b.text("#count") == "1 of %d flows" % rec.n
    b.click_row("/status/500")
    assert "matched fail_on" in b.text("#dbody h3")
    # the next flow with the keyboard
    from selenium.webdriver.common.keys import Keys
    b.find("body")[0].send_keys(Keys.ESCAPE)
    b.search("s:4xx")
    b.click_row("/status/404")
    b.search("status")
    b.click_row("/status/404")
    b.find("body")[0].send_keys("j")
    assert H.wait_for(lambda: "/status/500" in b.text("#dbody h3")), b.text("#dbody h3")
    # a report of nothing still opens
    d = H.tmpdir("empty")
    H.write(os.path.join(d, "none.mitmlua"), "")
    r = subprocess.run([H.BIN, "-n", "-q", "-r", os.path.join(d, "none.mitmlua"),
                        "--set", "report=" + os.path.join(d, "empty.html")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    b.open(os.path.join(d, "empty.html"))
    assert b.text("#sum-flows .v") == "0" and b.text("#count") == "0 flows"
    severe = [e for e in b.logs() if e.get("level") == "SEVERE"]
    assert not severe, severe


@test(timeout=60)
def flow_headers_and_bodies():
    rec = recording()
    b = browser().open(rec.page)
    b.search("json")
    assert b.text("#count") == "1 of %d flows" % rec.n, b.text("#count")
    b.click_row("/echo/json?x=1")
    assert "X-Test\nhello report" in b.text("#d-req-headers") or "X-Test hello report" in b.text("#d-req-headers"), \
        b.text("#d-req-headers")
    assert "application/json" in b.text("#d-resp-headers")
    body = b.text("#d-resp-body")
    doc = json.loads(body)
    assert doc["path"] == "/echo/json?x=1" and ["X-Test", "hello report"] in doc["headers"], doc
    assert '\n  "method": "GET"' in body, "JSON indented: %r" % body[:200]
    assert "200 OK" in b.text("#d-status")
    # a form as fields
    b.search("POST form")
    b.click_row("/echo/form")
    assert [r.text for r in b.find("#d-req-body-form tr")] == ["a 1", "b two words"], \
        [r.text for r in b.find("#d-req-body-form tr")]
    # gzip decoded, binary as hex, the error shown
    b.search("gzip")
    b.click_row("/gzip")
    assert "gzip-encoded" in b.text("#dbody") and json.loads(b.text("#d-resp-body"))
    b.search("bytes/300")
    b.click_row("/bytes/300")
    assert b.text("#d-resp-body").startswith("00000000  "), b.text("#d-resp-body")[:100]
    b.search("is:error")
    b.click_row("/drop")
    assert "Error:" in b.text("#dbody")
    b.search("img")
    b.click_row("/img")
    assert b.d.execute_script("var i=document.querySelector('#dbody img.body');"
                              "return i && i.complete ? i.naturalWidth : -1") == 1, "the image is shown"
    # searching narrows, an empty search shows all, a negation excludes
    # TLS details of both sides
    b.search("https")
    b.click_row("/echo/tls")
    text = b.text("#dbody")
    assert "Server connection" in text.title() or "SERVER CONNECTION" in text, text
    assert text.count("TLSv1.") >= 2, text
    b.search("s:4xx")
    assert b.text("#count") == "1 of %d flows" % rec.n
    b.search("!echo")
    assert b.text("#count") == "%d of %d flows" % (rec.n - 5, rec.n), b.text("#count")
    b.search("")
    assert b.text("#count") == "%d flows" % rec.n


@test(timeout=60)
def hostile_recording_runs_nothing():
    rec = recording()
    b = browser().open(rec.page)
    b.no_alert()
    b.search("/evil")
    b.click_row("/evil")
    shown = b.text("#d-resp-body")
    assert "</script><script>document.title='pwned'" in shown and "<img src=x onerror=" in shown, shown
    assert "<script>alert" in b.text("#d-resp-headers")
    assert "<script>alert" in b.text("#d-req-headers")
    b.search("alert(3)")
    b.click_row("<script>alert(3)</script>")
    assert "<script>alert(3)</script>" in b.text("#dbody h3"), b.text("#dbody h3")
    assert "<img/src/onerror=alert(4)>" in b.text("#dbody h3")
    time.sleep(0.3)
    b.no_alert()
    d = b.d
    assert d.title == "mitmlua report", d.title
    assert d.execute_script("return window.PWNED === undefined && !document.body.hasAttribute('data-pwned')")
    assert not b.find("img[src='x']") and len(b.find("h1")) == 1, "recorded markup became DOM"
    severe = [e for e in b.logs() if e.get("level") == "SEVERE" and "Content Security Policy" not in e.get("message", "")]
    assert not severe, severe


@test(timeout=60)
def screenshot_for_a_person():
    """The page as a person sees it first, and with a flow open: kept under
    build/test-output/test_report/ with the page itself."""
    rec = recording()
    b = browser()
    os.makedirs(OUT, exist_ok=True)
    b.d.set_window_size(1400, 1700)
    try:
        b.open(rec.live)
        overview = os.path.join(OUT, "report.png")
        assert b.d.save_screenshot(overview) and os.path.getsize(overview) > 10000
        b.click_row("/echo/tls")
        b.d.execute_script("window.scrollTo(0, 0)")
        detail = os.path.join(OUT, "report-flow.png")
        assert b.d.save_screenshot(detail) and os.path.getsize(detail) > 10000
    finally:
        b.d.set_window_size(1400, 1000)
    shutil.copy(rec.live, os.path.join(OUT, "report.html"))
    print("# screenshot: %s" % overview)
    print("# screenshot: %s" % detail)
    print("# report: %s" % os.path.join(OUT, "report.html"))


@test(timeout=120)
def thousand_api_flows_size():
    """traffic_shapes' json-api exchanges (what test_dump_compact measures),
    1,000 of them: the report is at most a few times the dump."""
    only_mitmlua()
    d = H.tmpdir("size")
    dump = os.path.join(d, "flows.mitmlua")
    page = os.path.join(d, "report.html")
    server = T.ShapeServer()
    # its handler writes the head and the body apart: with Nagle, each
    # exchange waits for a delayed ACK (40 ms, 40 s for the lot)
    server.RequestHandlerClass = type("NoDelay", (server.RequestHandlerClass,), {"disable_nagle_algorithm": True})
    try:
        ex = T.exchanges("json-api", n=1000)
        for _, path, _, _, status, sh, resp in ex:
            server.by_path[path] = (status, sh, resp)
        p = H.Proxy(["-q", "-w", dump]).start()
        st = through(p, [(m, "http://127.0.0.1:%d%s" % (server.port, path), dict(rh), body or None)
                         for m, path, rh, body, _, _, _ in ex])
        assert st == [e[4] for e in ex], st
        assert p.stop() == 0
    finally:
        server.stop()
    t0 = time.monotonic()
    r = subprocess.run([H.BIN, "-n", "-q", "-r", dump, "--set", "report=" + page],
                       capture_output=True, text=True, timeout=60)
    dt = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    ds, rs = os.path.getsize(dump), os.path.getsize(page)
    print("# 1000 API flows: dump %d bytes, report %d bytes (%.1fx), written in %.2fs" % (ds, rs, rs / ds, dt))
    assert rs <= 3 * ds, "report %d bytes, dump %d" % (rs, ds)
    # bodies over report_body_limit are cut, with their size
    r = subprocess.run([H.BIN, "-n", "-q", "-r", dump, "--set", "report=" + page,
                        "--set", "report_body_limit=64"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(page) < rs


@test
def report_unwritable_is_one_clear_error():
    only_mitmlua()
    d = H.tmpdir("bad")
    dump = os.path.join(d, "none.mitmlua")
    H.write(dump, "")
    r = subprocess.run([H.BIN, "-n", "-q", "-r", dump, "--set", "report=" + os.path.join(d, "no", "r.html")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "report" in lines[0] and "No such file" in lines[0], r.stderr


if __name__ == "__main__":
    H.main()
