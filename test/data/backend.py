#!/usr/bin/python3
"""A small JSON API backend on 127.0.0.1 for making mitmdump fixtures and
the dump compactness comparison.  Usage: backend.py PORT [TLS_PORT CERTFILE]
(the certificate file holds key and cert).  Serves HTTP/1.1 until killed."""
import json, random, ssl, sys, threading, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", "%032x" % random.getrandbits(128))
        self.send_header("Cache-Control", "no-store")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def item(self, i):
        r = random.Random(i)
        return {
            "id": i,
            "name": "item-%d" % i,
            "price": round(r.uniform(1, 500), 2),
            "in_stock": r.random() > 0.3,
            "tags": r.sample(["red", "green", "blue", "sale", "new", "eco", "xl"], 3),
            "owner": {"id": r.randrange(1, 10000), "email": "user%d@example.test" % r.randrange(1000)},
            "created": "2024-0%d-1%dT12:%02d:00Z" % (r.randrange(1, 9), r.randrange(9), r.randrange(60)),
        }

    def do_GET(self):
        p = self.path
        if p.startswith("/api/items/"):
            i = int(p.rsplit("/", 1)[1].split("?")[0] or 0)
            self.send(200, json.dumps(self.item(i)).encode())
        elif p.startswith("/api/search"):
            n = (hash(p) % 20) + 5
            self.send(200, json.dumps({"results": [self.item(j) for j in range(n)], "total": n}).encode())
        elif p.startswith("/static/page"):
            body = ("<html><body>" + "".join("<p>row %d of the catalogue</p>" % j for j in range(300)) + "</body></html>").encode()
            gz = zlib.compressobj(6, zlib.DEFLATED, 31)
            data = gz.compress(body) + gz.flush()
            self.send(200, data, "text/html", [("Content-Encoding", "gzip")])
        elif p.startswith("/bin"):
            self.send(200, bytes(random.getrandbits(8) for _ in range(2048)), "application/octet-stream")
        else:
            self.send(404, b'{"error":"not found"}')

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        self.send(201, json.dumps({"ok": True, "echo": obj}).encode())


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    if len(sys.argv) > 3:
        tls = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3])
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
