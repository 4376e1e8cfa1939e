#!/usr/bin/python3
"""The dump is compact: for the same realistic API traffic (a few hundred
JSON exchanges), mitmlua's -w file is at most a fifth of the size of the
file mitmdump writes (issue 3), and it reads back whole.  Sizes, not times:
the traffic is deterministic (traffic_shapes.py), so the figures only move
when the format does.  The other shapes are printed as diagnostics; the
benchmark reports them all (bench/run, section "dumpsize")."""
import os
import subprocess

import harness as H
from harness import test, fixture
import traffic_shapes as T


@fixture
def server():
    return T.ShapeServer()


def recorded_size(binary, shape, path):
    """Drive `shape` through a proxy recording with -w; the file's size."""
    p = H.Proxy(["-q", "-w", path], binary=binary, label=os.path.basename(binary)).start()
    n = len(T.exchanges(shape))
    good = T.drive(shape, p.port, server().port)
    assert good == n, "%s answered %d of %d %s exchanges as sent" % (binary, good, n, shape)
    assert p.stop() == 0, p.stderr
    return os.path.getsize(path)


def compare(shape):
    if H.IS_MITMDUMP:
        H.skip("needs mitmlua under test and Debian's mitmdump as the reference")
    H.need_mitmdump()
    d = H.tmpdir("compact")
    ours = recorded_size(H.BIN, shape, os.path.join(d, "mitmlua.dump"))
    theirs = recorded_size(H.MITMDUMP, shape, os.path.join(d, "mitmdump.flows"))
    n = len(T.exchanges(shape))
    print("# %s, %d flows: mitmlua %d B (%.0f B/flow), mitmdump %d B (%.0f B/flow), %.2fx smaller"
          % (shape, n, ours, ours / n, theirs, theirs / n, theirs / ours))
    # every recorded flow reads back
    r = subprocess.run([H.BIN, "-n", "-r", os.path.join(d, "mitmlua.dump")],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    printed = [l for l in r.stdout.decode().splitlines() if "127.0.0.1:%d" % server().port in l]
    assert len(printed) == n, "read back %d of %d flows" % (len(printed), n)
    return ours, theirs


@test(timeout=120)
def json_api_dump_is_a_fifth_of_mitmdumps():
    ours, theirs = compare("json-api")
    assert ours * 5 <= theirs, "mitmlua %d B vs mitmdump %d B: not a fifth" % (ours, theirs)


@test(timeout=120)
def header_only_flows_stay_small():
    # 204/304 exchanges measure the per-flow overhead of the format itself
    ours, theirs = compare("tiny")
    assert ours * 5 <= theirs, "mitmlua %d B vs mitmdump %d B" % (ours, theirs)


@test(timeout=120)
def incompressible_bodies_cost_no_more_than_mitmdumps():
    # random bytes: no format can win much, but ours must not be larger
    ours, theirs = compare("binary")
    assert ours <= theirs, "mitmlua %d B vs mitmdump %d B" % (ours, theirs)


if __name__ == "__main__":
    H.main()
