#!/usr/bin/python3
"""--set workers=N: N event loops (threads) share the port; every request is
answered and printed once, and scripts run in every worker."""
import os
import threading

import harness as H
from harness import test, fixture
from backend import Backend, payload


@fixture
def backend():
    return Backend().start()


@test
def two_workers_serve_everything():
    if H.Proxy().is_mitmdump:
        H.skip("mitmdump has no workers option")
    d = H.tmpdir("w")
    script = os.path.join(d, "tag.lua")
    H.write(script, 'function response(f) f.response.headers["X-Worker-Script"] = "yes" end\n')
    p = H.Proxy(["--set", "workers=2", "-s", script], label="workers").start()
    # main thread + two workers; the port accepts as soon as the first
    # worker's socket is bound, which can be before the threads run
    def tasks():
        return os.listdir("/proc/%d/task" % p.proc.pid)
    assert H.wait_for(lambda: len(tasks()) >= 3, timeout=5), tasks()
    results = []

    def client(i):
        urls = [backend().url("/bytes/%d" % (200 + i * 10 + j)) for j in range(5)]
        results.append(H.curl(urls, proxy=p))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(results) == 8
    for r in results:
        assert r.rc == 0 and [b[0] for b in r.blocks] == [200] * 5, r
        assert all(H.header(b[2], "X-Worker-Script") == "yes" for b in r.blocks)
    assert H.wait_for(lambda: p.stdout.count("<< 200 OK") == 40), p.stdout[-2000:]
    assert p.stop() == 0


if __name__ == "__main__":
    H.main()
