"""The request log's handler: whole JSON lines from many threads, without its lock."""

from __future__ import annotations

import logging
import os
import threading

import orjson

from resmon.server.logs import JsonFormatter, LineHandler


def test_line_handler_writes_whole_lines_from_many_threads(tmp_path):
    read_fd, write_fd = os.pipe()
    out = tmp_path / "log"
    sink = out.open("wb")
    with open(write_fd, "w", closefd=True) as stream:
        handler = LineHandler(stream)
        assert handler.fd == write_fd  # the lock-free path is the one under test
        handler.setFormatter(JsonFormatter())
        logger = logging.Logger("line-handler-test")
        logger.addHandler(handler)
        done = threading.Event()

        def drain() -> None:
            while chunk := os.read(read_fd, 65536):
                sink.write(chunk)
            done.set()

        reader = threading.Thread(target=drain)
        reader.start()

        def worker(t: int) -> None:
            for i in range(300):
                logger.info("request", extra={"worker": t, "i": i, "path": "/x" * (t * 20)})

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # A line too long for one atomic pipe write takes the locked path.
        logger.info("long", extra={"blob": "y" * 10_000})
    # The write end is closed: the reader sees EOF once it has everything.
    assert done.wait(10)
    reader.join(10)
    sink.close()
    os.close(read_fd)
    lines = out.read_bytes().splitlines()
    entries = [orjson.loads(line) for line in lines]
    assert len(entries) == 8 * 300 + 1
    assert sorted((e["worker"], e["i"]) for e in entries[:-1]) == [
        (t, i) for t in range(8) for i in range(300)
    ]
    assert entries[-1]["blob"] == "y" * 10_000
