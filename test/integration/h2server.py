"""h2server.py — a small HTTP/2 TLS origin for the upstream-HTTP/2 tests,
written with Debian's python3-h2 (the library mitmproxy itself uses).

s = H2Server(certfile, keyfile).start(); ... s.port, s.log, s.conns; s.stop()

ALPN: h2 is preferred; a client that does not offer it gets a minimal
HTTP/1.1 answer (X-Proto: HTTP/1.1), and an Upgrade request then gets a
101, so a test can tell which protocol the proxy chose.

Endpoints over h2 (answers carry x-proto: HTTP/2.0):
  /echo          JSON {method, scheme, authority, path, headers: [[n, v]...]
                 (regular fields in received order), length, sha256,
                 trailers: [[n, v]...]}
  /bytes/N       payload(N), sent as flow control allows, with content-length
  /nolength/N    the same without content-length
  /early-hints   103 (link: </style.css>; rel=preload), then 200
  /trailers      a body, then trailers x-checksum and grpc-status
  /rst           RST_STREAM INTERNAL_ERROR instead of an answer
  /refuse-once   RST_STREAM REFUSED_STREAM the first time, then 200
  /goaway-after  200, then GOAWAY (NO_ERROR): the connection takes no more
  /goaway-first  the first time GOAWAY with last stream 0 (the request was
                 not processed), then 200
  /stall         never answers
  /no-status     a HEADERS frame without :status (malformed)
Loopback only.
"""
import hashlib
import json
import socket
import ssl
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from backend import payload


class H2Server:
    def __init__(self, cert, key, host="127.0.0.1"):
        assert host in ("127.0.0.1", "::1")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.log = []          # (alpn, method, path) of every request
        self.conns = 0         # connections accepted (TLS done)
        self.pings = 0         # PING frames received (not ACKs)
        self.counts = {}
        self.sent = 0          # DATA bytes sent, as the peer's windows allowed
        self.lock = threading.Lock()
        self.stopped = False

    def start(self):
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass

    def paths(self):
        return [p for _, _, p in self.log]

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _conn(self, raw):
        raw.settimeout(30)
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self.conns += 1
        try:
            if s.selected_alpn_protocol() == "h2":
                H2Conn(self, s).run()
            else:
                self._http11(s)
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _http11(self, s):
        """One HTTP/1.1 request: 101 to an Upgrade, else a short 200."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            b = s.recv(65536)
            if not b:
                return
            buf += b
        head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, path = head[0].split(" ")[:2]
        fields = dict((l.split(":", 1)[0].strip().lower(), l.split(":", 1)[1].strip()) for l in head[1:] if ":" in l)
        with self.lock:
            self.log.append(("http/1.1", method, path))
        if "upgrade" in fields:
            import base64
            key = fields.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                                      .digest()).decode()
            s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\nX-Proto: HTTP/1.1\r\n\r\n" % accept).encode())
            while s.recv(65536):
                pass
            return
        body = b"over HTTP/1.1\n"
        s.sendall(b"HTTP/1.1 200 OK\r\nX-Proto: HTTP/1.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                  % len(body) + body)


class H2Conn:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8", validate_outbound_headers=False))
        self.streams = {}
        self.done = False
        # Requests are answered one at a time, in the order they ended: a
        # request that ends while an answer waits for window (send_body
        # reads meanwhile) waits its turn, so what the server does does not
        # depend on how the client's frames were cut into reads.
        self.answering = False
        self.waiting = []
        self.goaway_last = None  # last stream taken, once GOAWAY went out

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        self.conn.initiate_connection()
        self.flush()
        while not self.done:
            self.pump()

    def pump(self):
        """Read once and handle what came; answers go out as streams end."""
        data = self.sock.recv(65536)
        if not data:
            self.done = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            if self.goaway_last is None:
                raise
            events = []   # frames after our GOAWAY (h2 refuses them): nothing is owed
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.streams[ev.stream_id] = {"headers": ev.headers, "body": bytearray(), "trailers": []}
            elif isinstance(ev, h2.events.DataReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st["body"] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st["trailers"] = ev.headers
            elif isinstance(ev, h2.events.StreamEnded):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    self.waiting.append((ev.stream_id, st))
                    self.answer_waiting()
            elif isinstance(ev, h2.events.PingReceived):
                self.server.pings += 1   # the h2 library queues the ACK
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.done = True
        self.flush()

    def answer_waiting(self):
        if self.answering:
            return
        self.answering = True
        try:
            while self.waiting and not self.done:
                sid, st = self.waiting.pop(0)
                if self.goaway_last is not None and sid > self.goaway_last:
                    continue   # past our GOAWAY: the client tries it elsewhere
                self.flush()
                self.answer(sid, st)
        finally:
            self.answering = False

    def send_body(self, sid, data, end=True):
        """DATA as the peer's windows allow (reading WINDOW_UPDATEs)."""
        off = 0
        while off < len(data):
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.pump()
                if self.done:
                    return
                continue
            chunk = data[off:off + window]
            self.conn.send_data(sid, chunk)
            off += len(chunk)
            with self.server.lock:
                self.server.sent += len(chunk)
        if end:
            self.conn.end_stream(sid)
        self.flush()

    def answer(self, sid, st):
        hd = st["headers"]
        pseudo = dict((k, v) for k, v in hd if k.startswith(":"))
        path = pseudo.get(":path", "").split("?")[0]
        srv = self.server
        with srv.lock:
            srv.log.append(("h2", pseudo.get(":method"), pseudo.get(":path")))
            n = srv.counts[path] = srv.counts.get(path, 0) + 1
        base = [("x-proto", "HTTP/2.0")]
        c = self.conn
        if path == "/echo":
            doc = {"method": pseudo.get(":method"), "scheme": pseudo.get(":scheme"),
                   "authority": pseudo.get(":authority"), "path": path,
                   "headers": [[k, v] for k, v in hd if not k.startswith(":")],
                   "length": len(st["body"]), "sha256": hashlib.sha256(st["body"]).hexdigest(),
                   "trailers": [[k, v] for k, v in st["trailers"]]}
            body = json.dumps(doc).encode()
            c.send_headers(sid, [(":status", "200"), ("content-type", "application/json"),
                                 ("content-length", str(len(body)))] + base)
            self.send_body(sid, body)
        elif path.startswith("/bytes/") or path.startswith("/nolength/"):
            size = int(path.rsplit("/", 1)[1])
            length = [("content-length", str(size))] if path.startswith("/bytes/") else []
            c.send_headers(sid, [(":status", "200")] + length + base)
            self.send_body(sid, payload(size))
        elif path == "/early-hints":
            c.send_headers(sid, [(":status", "103"), ("link", "</style.css>; rel=preload")])
            self.flush()
            body = b"after the hints\n"
            c.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))] + base)
            self.send_body(sid, body)
        elif path == "/trailers":
            c.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")] + base)
            self.send_body(sid, b"body before trailers\n", end=False)
            c.send_headers(sid, [("x-checksum", "abc123"), ("grpc-status", "0")], end_stream=True)
        elif path == "/rst":
            c.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/refuse-once" and n == 1:
            c.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path == "/refuse-once":
            c.send_headers(sid, [(":status", "200"), ("content-length", "11")] + base)
            self.send_body(sid, b"second try\n")
        elif path == "/goaway-after":
            c.send_headers(sid, [(":status", "200"), ("content-length", "5")] + base)
            self.send_body(sid, b"bye!\n")
            c.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid)
            self.goaway_last = sid
        elif path == "/goaway-first" and n == 1:
            c.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=0)
            self.goaway_last = 0
        elif path == "/goaway-first":
            c.send_headers(sid, [(":status", "200"), ("content-length", "11")] + base)
            self.send_body(sid, b"second try\n")
        elif path == "/stall":
            pass
        elif path == "/no-status":
            c.send_headers(sid, [("content-type", "text/plain")], end_stream=True)
        else:
            c.send_headers(sid, [(":status", "404"), ("content-length", "0")] + base, end_stream=True)
        self.flush()
