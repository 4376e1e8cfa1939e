"""Helpers shared by the replay tests: recording real traffic with -w and
starting a proxy with -S."""
import os

import harness as H
from backend import Backend


def need_mitmlua():
    if H.Proxy().is_mitmdump:
        H.skip("mitmlua's options and dump format")


def record(requests, backend, extra=()):
    """Run each request (kwargs for H.curl, url given as a path on the
    backend) through a recording proxy; returns (dump path, results)."""
    path = os.path.join(H.tmpdir("rec"), "flows.mitmlua")
    p = H.Proxy(["-w", path] + list(extra), label="rec").start()
    results = []
    for req in requests:
        req = dict(req)
        url = backend.url(req.pop("path"))
        r = H.curl(url, proxy=p, **req)
        assert r.rc == 0 and r.status is not None, r
        results.append(r)
    assert p.stop() == 0, p.stderr
    return path, results


def dead_port_backend():
    """A backend that is started and stopped: its port refuses connections."""
    b = Backend().start()
    b.stop()
    return b
