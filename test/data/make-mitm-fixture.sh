#!/usr/bin/env bash
# make-mitm-fixture.sh OUT [N] — record traffic through Debian's mitmdump
# (8.1.1) into a mitmproxy flow file: HTTP and HTTPS JSON API calls, a
# gzip page, a binary body, a connection error and a WebSocket exchange.
# With N > 0, makes N extra JSON API exchanges (for the compactness
# comparison).  Loopback only; ports from $PORT_BASE (default 18930).
set -eu
OUT=$1; N=${2:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
B=${PORT_BASE:-18930}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/k.pem" -out "$T/c.pem" -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cat "$T/k.pem" "$T/c.pem" > "$T/kc.pem"
$PY "$HERE/backend.py" $((B+1)) $((B+2)) "$T/kc.pem" &
$PY - $((B+3)) <<'PYEOF' &
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
PYEOF
rm -f "$OUT"
mitmdump -q --listen-host 127.0.0.1 -p $((B+4)) --ssl-insecure --set confdir="$T/conf" -w "$OUT" &
MP=$!
for i in $(seq 50); do
  curl -s -o /dev/null http://127.0.0.1:$((B+4))/ 2>/dev/null && break; sleep 0.2
done
sleep 0.5
X="curl -s -o /dev/null -x http://127.0.0.1:$((B+4)) --max-time 10"
H=http://127.0.0.1:$((B+1)); S=https://localhost:$((B+2))
if [ "$N" -eq 0 ]; then
  $X "$H/api/items/7?verbose=1" -H 'X-Odd-CASE: yes'
  $X "$H/api/echo" -H 'Content-Type: application/json' -d '{"a":1,"b":[true,null]}'
  $X --compressed "$H/static/page"
  $X "$H/bin"
  $X -k --http1.1 "$S/api/items/9"
  $X -k --http1.1 "$S/api/echo" -H 'Content-Type: application/json' -d '{"tls":true}'
  $X "http://127.0.0.1:$((B+9))/nothing-listens-here" || true
  $PY - $((B+4)) $((B+3)) <<'PYEOF'
import base64, os, socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET http://127.0.0.1:%s/chat HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
           % (sys.argv[2], sys.argv[2], key)).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
def frame(op, data):
    mask = os.urandom(4)
    return bytes([0x80 | op, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
for op, data in ((1, b"hello ws"), (2, b"\x00\x01\x02bin")):
    s.sendall(frame(op, data))
    got = s.recv(4096)
s.sendall(frame(8, struct.pack("!H", 1000)))
try:
    s.recv(4096)
except OSError:
    pass
s.close()
PYEOF
else
  for i in $(seq "$N"); do
    case $((i % 4)) in
      0) $X "$H/api/items/$i" -H 'Accept: application/json' -H "Authorization: Bearer tok$((i % 3))" ;;
      1) $X "$H/api/search?q=term$i&page=$((i % 5))" -H 'Accept: application/json' ;;
      2) $X "$H/api/echo" -H 'Content-Type: application/json' -d "{\"id\":$i,\"name\":\"n$i\",\"qty\":$((i % 9))}" ;;
      3) $X -k --http1.1 "$S/api/items/$((i * 3))" -H 'Accept: application/json' ;;
    esac
  done
fi
sleep 0.5
kill -INT $MP; wait $MP 2>/dev/null || true
