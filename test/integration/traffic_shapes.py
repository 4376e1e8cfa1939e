"""traffic_shapes.py — the same realistic traffic, again and again.

A small HTTP/1.1 server and a client that drives it through a proxy, for
comparing what different proxies write with -w for identical traffic
(test_dump_compact.py, and the "dumpsize" section of bench/run).  Each
shape is a deterministic list of exchanges made from a seeded PRNG, so two
runs send and receive the same bytes apart from the Date header.

Shapes (name → what it models):
  json-api  REST calls with JSON bodies both ways, bearer tokens, request ids
  html-gzip web pages of 20-60 KB of text, gzip-encoded by the server (~6 KB)
  binary    64 KB of random bytes (images, archives): nothing to compress
  tiny      header-only exchanges (204, 304): the per-flow overhead
Loopback only; every socket operation has a timeout.
"""
import gzip
import http.client
import http.server
import json
import random
import socketserver
import threading

SHAPES = ("json-api", "html-gzip", "binary", "tiny")
DEFAULT_COUNT = {"json-api": 300, "html-gzip": 100, "binary": 40, "tiny": 400}

WORDS = ("alpha beta gamma delta order invoice customer shipping address street city "
         "postal country payment status pending complete refund product price quantity "
         "discount total currency account profile settings session token created updated "
         "deleted active inactive premium standard basic region warehouse tracking carrier "
         "the of and to in is that for it as with was on be at by this had not are but").split()


def _uuid(rng):
    return "%08x-%04x-4%03x-a%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                           rng.getrandbits(12), rng.getrandbits(48))


def _sentence(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _json_record(rng, i):
    return {
        "id": 100000 + i, "uuid": _uuid(rng), "name": _sentence(rng, 2, 4).title(),
        "email": "user%d@example.test" % rng.randint(1, 99999),
        "status": rng.choice(("pending", "active", "complete", "refunded")),
        "created_at": "2026-%02d-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 12), rng.randint(1, 28),
                                                         rng.randint(0, 23), rng.randint(0, 59),
                                                         rng.randint(0, 59)),
        "total": round(rng.uniform(1, 5000), 2), "currency": "EUR",
        "items": [{"sku": "SKU-%06d" % rng.randint(0, 999999), "quantity": rng.randint(1, 9),
                   "price": round(rng.uniform(0.5, 500), 2), "note": _sentence(rng, 0, 8)}
                  for _ in range(rng.randint(1, 8))],
    }


def exchanges(shape, n=None, seed=1):
    """The exchanges of a shape: a list of (method, path, req_headers,
    req_body, status, resp_headers, resp_body)."""
    rng = random.Random("%s-%d" % (shape, seed))
    n = n or DEFAULT_COUNT[shape]
    token = "Bearer " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(40))
    out = []
    for i in range(n):
        if shape == "json-api":
            method = rng.choice(("GET", "GET", "GET", "POST", "PUT", "DELETE"))
            path = "/api/v1/%s/%d" % (rng.choice(("orders", "customers", "invoices")),
                                      i * 1000 + rng.randint(0, 999))
            if method == "GET":
                path += "?include=%s&page=%d" % (rng.choice(("items", "profile", "history")), rng.randint(1, 20))
            rh = [("Accept", "application/json"), ("Authorization", token),
                  ("User-Agent", "shop-client/4.2 (python)"), ("X-Request-Id", _uuid(rng))]
            body = b""
            if method in ("POST", "PUT"):
                body = json.dumps(_json_record(rng, i)).encode()
                rh.append(("Content-Type", "application/json"))
            status = {"GET": 200, "POST": 201, "PUT": 200, "DELETE": 204}[method]
            resp = b"" if status == 204 else json.dumps(
                {"data": [_json_record(rng, i * 10 + k) for k in range(rng.randint(1, 4))],
                 "meta": {"page": rng.randint(1, 20), "request_id": _uuid(rng)}}).encode()
            sh = [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
                  ("ETag", '"%s"' % _uuid(rng)), ("X-Request-Id", _uuid(rng)),
                  ("Strict-Transport-Security", "max-age=31536000")]
        elif shape == "html-gzip":
            method, path, body, status = "GET", "/articles/%d.html" % (i * 1000 + rng.randint(0, 999)), b"", 200
            rh = [("Accept", "text/html"), ("Accept-Encoding", "gzip"),
                  ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0")]
            paras = "".join("<p>%s.</p>\n" % _sentence(rng, 20, 80) for _ in range(rng.randint(40, 110)))
            html = ("<!doctype html><html><head><title>%s</title></head><body>\n%s</body></html>\n"
                    % (_sentence(rng, 3, 8), paras)).encode()
            resp = gzip.compress(html, compresslevel=6, mtime=0)
            sh = [("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip"),
                  ("Cache-Control", "max-age=600"), ("Vary", "Accept-Encoding")]
        elif shape == "binary":
            method, path, body, status = "GET", "/img/%d.jpg" % (i * 1000 + rng.randint(0, 999)), b"", 200
            rh = [("Accept", "image/*"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0")]
            resp = rng.randbytes(64 * 1024)
            sh = [("Content-Type", "image/jpeg"), ("Cache-Control", "max-age=86400")]
        elif shape == "tiny":
            method, body = rng.choice(("GET", "HEAD")), b""
            path = "/static/%d-%s.css" % (i, _uuid(rng)[:8])
            rh = [("Accept", "*/*"), ("If-None-Match", '"%s"' % _uuid(rng)[:16])]
            status, resp = rng.choice((204, 304)), b""
            sh = [("Cache-Control", "max-age=3600"), ("ETag", '"%s"' % _uuid(rng)[:16])]
        else:
            raise ValueError("unknown traffic shape %r" % shape)
        out.append((method, path, rh, body, status, sh, resp))
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shapes/1.0"

    def log_message(self, *a):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        ex = self.server.by_path.get(self.path)
        if ex is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, sh, resp = ex
        self.send_response(status)
        for k, v in sh:
            self.send_header(k, v)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(resp)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(resp)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


class ShapeServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves the responses of every shape, looked up by request path."""
    daemon_threads = True

    def __init__(self, host="127.0.0.1"):
        super().__init__((host, 0), _Handler)
        self.by_path = {}
        for shape in SHAPES:
            for _, path, _, _, status, sh, resp in exchanges(shape):
                self.by_path[path] = (status, sh, resp)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


def drive(shape, proxy_port, server_port, proxy_host="127.0.0.1", timeout=30):
    """Send every exchange of `shape` through an explicit HTTP proxy on one
    keep-alive connection; returns how many got the expected status."""
    good = 0
    conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout)
    try:
        for method, path, rh, body, status, _, resp in exchanges(shape):
            conn.request(method, "http://127.0.0.1:%d%s" % (server_port, path), body=body or None,
                         headers=dict(rh))
            r = conn.getresponse()
            got = r.read()
            if r.status == status and (method == "HEAD" or got == resp):
                good += 1
    finally:
        conn.close()
    return good
