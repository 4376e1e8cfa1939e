#!/usr/bin/python3
"""backend.py — the small HTTP/1.1 test backend of the integration tests.

In-process:   b = Backend(tls=(certfile, keyfile), host="::1"); b.start();
              ... b.port, b.log (every request received), b.stop()
Subprocess:   backend.py [--host H] [--port N] [--tls CERT KEY]
              prints "PORT <n>" on stdout once listening, serves until killed.

Endpoints (every method; HEAD answers the GET headers without a body):
  /echo          JSON {method, path, request_line, headers: [[name, value]...]
                 in received order and case, body: base64, http_version}
  /bytes/N       N deterministic bytes (payload(N)) with Content-Length
  /chunked/N     the same bytes, chunked, in several chunks
  /close/N       the same bytes ended by closing the connection
  /status/CODE   that status; no body for 1xx/204/304
  /early-hints   103 Early Hints (Link: </style.css>; rel=preload), then 200
  /gzip          gzip-encoded JSON, Content-Encoding: gzip
  /slow/SECONDS  answers after SECONDS (at most 30)
  /drop          resets the connection without answering
  /headers?n=v   sets the response headers given in the query
  /upload        reads a body of any size (Content-Length or chunked),
                 answers JSON {length, sha256}
Expect: 100-continue is answered by http.server itself.
Loopback only: the host must be 127.0.0.1 or ::1.
"""
import base64
import gzip
import hashlib
import json
import random
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PAYLOAD_CACHE = {}


def payload(n):
    """The deterministic bytes /bytes/N, /chunked/N and /close/N send."""
    if n not in _PAYLOAD_CACHE:
        data = random.Random(n).randbytes(n)
        if n <= 64 << 20:
            _PAYLOAD_CACHE[n] = data
        return data
    return _PAYLOAD_CACHE[n]


GZIP_DOC = {"compressed": True, "text": "gzip " * 50}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mitmlua-test-backend"
    sys_version = ""

    def log_message(self, *a):
        pass

    # ---- helpers -------------------------------------------------------
    def read_body(self, sink=None):
        """Read the request body (Content-Length or chunked).  Returns the
        bytes, or feeds them to sink(chunk) and returns the length."""
        parts, total = [], 0

        def take(b):
            nonlocal total
            total += len(b)
            if sink:
                sink(b)
            else:
                parts.append(b)

        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                while size:
                    b = self.rfile.read(min(size, 1 << 20))
                    if not b:
                        raise ConnectionError("eof in chunk")
                    size -= len(b)
                    take(b)
                self.rfile.readline(3)
        else:
            n = int(self.headers.get("Content-Length", "0") or 0)
            while n:
                b = self.rfile.read(min(n, 1 << 20))
                if not b:
                    raise ConnectionError("eof in body")
                n -= len(b)
                take(b)
        return total if sink else b"".join(parts)

    def send(self, code, body=b"", ctype="application/octet-stream", extra=(),
             length=True):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            # in pieces, counted: a test of back-pressure reads how much
            # of a body the backend managed to send (Backend.sent)
            step = 256 << 10
            for i in range(0, len(body), step):
                piece = body[i:i + step]
                self.wfile.write(piece)
                with self.server.log_lock:
                    self.server.sent += len(piece)

    # ---- dispatch ------------------------------------------------------
    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    def dispatch(self):
        entry = {
            "method": self.command,
            "path": self.path,
            "request_line": self.requestline,
            "headers": [[k, v] for k, v in self.headers.items()],
            "client": list(self.client_address[:2]),
            "time": time.time(),
        }
        with self.server.log_lock:
            self.server.log.append(entry)
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        parts = path.strip("/").split("/")
        head = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else ""
        if head == "upload":
            h = hashlib.sha256()
            n = self.read_body(h.update)
            body = json.dumps({"length": n, "sha256": h.hexdigest()}).encode()
            return self.send(200, body, "application/json")
        req_body = self.read_body()
        if head == "echo":
            doc = {
                "method": self.command,
                "path": self.path,
                "request_line": self.requestline,
                "http_version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": base64.b64encode(req_body).decode(),
                "client": list(self.client_address[:2]),
            }
            return self.send(200, json.dumps(doc).encode(), "application/json")
        if head == "bytes":
            return self.send(200, payload(int(arg)))
        if head == "chunked":
            data = payload(int(arg))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            step = max(1, min(len(data) // 5 + 1, 256 << 10))
            for i in range(0, len(data), step):
                c = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
            return
        if head == "close":
            data = payload(int(arg))
            self.close_connection = True
            self.send(200, data, extra=[("Connection", "close")], length=False)
            self.wfile.flush()
            return
        if head == "status":
            code = int(arg)
            if code in (204, 304) or 100 <= code < 200:
                self.send_response(code)
                self.end_headers()
                return
            return self.send(code, b"status %d\n" % code, "text/plain")
        if head == "early-hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            return self.send(200, b"after the hints\n", "text/plain")
        if head == "gzip":
            body = gzip.compress(json.dumps(GZIP_DOC).encode())
            return self.send(200, body, "application/json",
                             [("Content-Encoding", "gzip")])
        if head == "drop":
            # close without a response (RST: no lingering)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            return
        if head == "slow":
            time.sleep(min(float(arg or 1), 30))
            return self.send(200, b"slow\n", "text/plain")
        if head == "headers":
            extra = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
            return self.send(200, b"headers\n", "text/plain", extra)
        return self.send(404, b"not found\n", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, family, ctx):
        self.address_family = family
        self.log = []
        self.log_lock = threading.Lock()
        self.sent = 0       # body bytes written to clients so far (send())
        self.ctx = ctx
        super().__init__(addr, Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ctx:
            # the handshake runs in the handler thread (first read), so a
            # client that stalls it cannot block the accept loop
            sock = self.ctx.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        pass


class Backend:
    def __init__(self, host="127.0.0.1", port=0, tls=None):
        if host not in ("127.0.0.1", "::1"):
            raise ValueError("loopback only")
        self.host, self.tls = host, tls
        ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            ctx.set_alpn_protocols(["http/1.1"])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = _Server((host, port), fam, ctx)
        self.port = self.server.server_address[1]
        self.thread = None

    @property
    def log(self):
        with self.server.log_lock:
            return list(self.server.log)

    def paths(self):
        return [e["path"] for e in self.log]

    @property
    def sent(self):
        """Body bytes written to clients so far (Content-Length answers)."""
        with self.server.log_lock:
            return self.server.sent

    def clear(self):
        with self.server.log_lock:
            self.server.log.clear()

    @property
    def netloc(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (h, self.port)

    def url(self, path="/", scheme=None, host=None):
        scheme = scheme or ("https" if self.tls else "http")
        if host is None:
            return "%s://%s%s" % (scheme, self.netloc, path)
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def main(argv):
    host, port, tls = "127.0.0.1", 0, None
    i = 0
    while i < len(argv):
        if argv[i] == "--host":
            host = argv[i + 1]; i += 2
        elif argv[i] == "--port":
            port = int(argv[i + 1]); i += 2
        elif argv[i] == "--tls":
            tls = (argv[i + 1], argv[i + 2]); i += 3
        else:
            sys.exit("usage: backend.py [--host H] [--port N] [--tls CERT KEY]")
    b = Backend(host, port, tls)
    print("PORT %d" % b.port, flush=True)
    try:
        b.server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
