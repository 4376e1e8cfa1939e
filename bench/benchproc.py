"""bench/benchproc.py — the processes bench/run starts: each pinned to a core
when the machine has two (PIN), started and waited for until its port
listens, and stopped by its own pid (never by name: other people's nginx
and mitmdump may run on the same machine), all of them at exit."""

import atexit
import os
import signal
import socket
import subprocess
import sys
import time

PIN = False  # bench/run sets it: two cores and taskset


class BenchError(Exception):
    """A configuration that cannot be measured; its message becomes the n/a reason."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


LIVE = []  # Popen objects we started and have not reaped


def stop(p, sig=signal.SIGTERM, wait=10):
    """Stop one process we started, by its own pid, and reap it."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    if p in LIVE:
        LIVE.remove(p)
    return p.returncode


def stop_all():
    for p in list(LIVE):
        stop(p, wait=5)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def last_line(path):
    try:
        with open(path, "rb") as f:
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        return lines[-1][:200] if lines else ""
    except OSError:
        return ""


def pinned(cpu, argv):
    """argv to run on `cpu` (a taskset list such as "1" or "0,1") when pinning."""
    return (["taskset", "-c", cpu] if cpu is not None and PIN else []) + argv


def spawn(argv, cpu, logpath, port, timeout=30):
    """Start argv pinned to `cpu` and wait until `port` accepts connections."""
    cmd = pinned(cpu, argv)
    errf = open(logpath, "ab")
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    except OSError as e:
        raise BenchError(f"cannot start {argv[0]}: {e.strerror}")
    finally:
        errf.close()
    LIVE.append(p)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            LIVE.remove(p)
            raise BenchError(f"{os.path.basename(argv[0])} exited with {p.returncode}: {last_line(logpath)}")
        if port_open(port):
            return p
        time.sleep(0.02)
    stop(p)
    raise BenchError(f"{os.path.basename(argv[0])} not listening after {timeout}s")


def proc_status(pid, key):
    """A /proc/PID/status field in KiB (VmHWM: peak RSS, VmRSS: current)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sh(argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, **kw)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])}: {r.stdout.decode(errors='replace').strip()[-300:]}")
    return r.stdout.decode(errors="replace")
