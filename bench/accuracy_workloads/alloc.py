"""Memory workloads for bench/accuracy.py, each with a known shape.

    python alloc.py grow MiB           allocate MiB in 20 steps, hold, free in 20 steps
    python alloc.py threads N MiB      N threads, each allocating MiB in 8 steps, 3 rounds
    python alloc.py fork MiB CHILDREN  a parent touches MiB, forks CHILDREN that sleep
                                       (shared pages: summed RSS counts them once per
                                       process, PSS once)

Every allocation is written to, so it is resident, not just reserved.
"""

from __future__ import annotations

import os
import sys
import threading
import time

MIB = 1 << 20


def touched(size: int) -> bytearray:
    block = bytearray(size)
    # bytearray(n) may come from calloc's zero pages: write one byte per page.
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    return block


def grow(mib: int) -> None:
    steps = 20
    held = []
    for _ in range(steps):
        held.append(touched(mib * MIB // steps))
        time.sleep(0.05)
    time.sleep(0.2)
    while held:
        held.pop()
        time.sleep(0.05)
    time.sleep(0.3)


def threads(count: int, mib: int) -> None:
    def worker() -> None:
        for _ in range(3):
            held = [touched(mib * MIB // 8) for _ in range(8)]
            # Some CPU on the memory while it is held.
            for block in held:
                sum(block[::4096])
            time.sleep(0.15)
            del held
            time.sleep(0.1)

    pool = [threading.Thread(target=worker) for _ in range(count)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def fork(mib: int, children: int) -> None:
    shared = touched(mib * MIB)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            time.sleep(3)
            os._exit(0)
        pids.append(pid)
    time.sleep(1)
    for pid in pids:
        os.waitpid(pid, 0)
    del shared


def main(argv: list[str]) -> None:
    kind, numbers = argv[0], [int(a) for a in argv[1:]]
    {"grow": grow, "threads": threads, "fork": fork}[kind](*numbers)


if __name__ == "__main__":
    main(sys.argv[1:])
