"""Small servers for the tests, on 127.0.0.1.

ThreadedServer is what they share: a listening socket on a free port
(`port`), each connection handled by `_one(conn)` in a thread of its own,
TLS contexts from tls=(cert, key) in `ctx`, and a list `got` for what the
server wants to report.

RedisLike is client-first and speaks a little of Redis's protocol (RESP):
a command is an array of bulk strings ("*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
see resp()); PING answers "+PONG", ECHO x the bulk string x, anything else
"-ERR unknown command".  Its first byte is "*": no HTTP method.  SmtpLike
is server-first: it greets ("220 ...") before the client says anything,
then answers each line with "250 <line>", and "QUIT" with "221 bye" and a
close.  Either may speak TLS.  Each keeps what it received, per
connection, in `got`."""
import socket
import ssl
import threading


class ThreadedServer:
    def __init__(self, tls=None):
        self.ctx = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*tls)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.got = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        raise NotImplementedError


class _LineServer(ThreadedServer):
    greeting = None

    def _one(self, c):
        got = bytearray()
        self.got.append(got)
        try:
            c.settimeout(20)
            if self.ctx:
                c = self.ctx.wrap_socket(c, server_side=True)
            if self.greeting:
                c.sendall(self.greeting)
            buf = b""
            state = {}
            while True:
                d = c.recv(65536)
                if not d:
                    return
                got += d
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    out = self.answer(line.rstrip(b"\r"), state)
                    if out:
                        c.sendall(out)
                    if out.startswith(b"221 "):   # SMTP's QUIT: the server closes
                        return
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()


def resp(*args):
    """A Redis command as a client sends it."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def bulk(x):
    return b"$%d\r\n%s\r\n" % (len(x), x)


class RedisLike(_LineServer):
    """Lines of a RESP array are collected until the command is whole."""

    def answer(self, line, state):
        cmd = state.get("cmd")
        if cmd is None:
            if not line.startswith(b"*"):
                return b"-ERR protocol error\r\n"
            state["cmd"], state["want"] = [], int(line[1:]) * 2
            return b""
        cmd.append(line)
        if len(cmd) < state["want"]:
            return b""
        state["cmd"] = None
        args = cmd[1::2]
        if args[0].upper() == b"PING":
            return b"+PONG\r\n"
        if args[0].upper() == b"ECHO" and len(args) == 2:
            return bulk(args[1])
        return b"-ERR unknown command\r\n"


class SmtpLike(_LineServer):
    greeting = b"220 smtp.test ESMTP ready\r\n"

    def answer(self, line, state):
        if line.upper() == b"QUIT":
            return b"221 bye\r\n"
        return b"250 " + line + b"\r\n"
