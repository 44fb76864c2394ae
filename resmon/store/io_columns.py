"""A run's disk I/O and network columns (schema version 12), from its summary's job block.

The collector's run summary carries ``job.io`` (``read_bytes``, ``write_bytes``, the
``sources`` its containers' figures came from) and ``job.network`` (``rx_bytes``,
``tx_bytes`` without loopback, each network namespace once); see
:mod:`resmon.collect.io_run`.  They are stored beside the job's CPU and memory in
``runs`` (:data:`IO_COLUMNS`), so that queries can sort and show them without
parsing payloads.  ``job_io_source`` is the one source when the job's containers
agree, else ``mixed``.

A summary without them (the Go collector's, resmon's before version 12, a peer's)
gives NULLs.  Pure, and never raises: the blocks are not checked on a push, so what
is not a number of the right kind is left out (NULL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from resmon.store.values import bigint

IO_COLUMNS = (
    "job_io_read_bytes",
    "job_io_write_bytes",
    "job_io_source",
    "job_net_rx_bytes",
    "job_net_tx_bytes",
)
IO_SOURCES = ("cgroup", "blkio", "proc", "mixed")


def _none() -> dict[str, Any]:
    return dict.fromkeys(IO_COLUMNS)


def _source(io: Mapping[str, Any]) -> str | None:
    sources = io.get("sources")
    if not isinstance(sources, list):
        return None
    named = {s for s in sources if isinstance(s, str) and s in IO_SOURCES}
    if not named or len(named) != len(sources):
        return None
    return named.pop() if len(named) == 1 else "mixed"


def io_columns(run_summary: Any) -> dict[str, Any]:
    """The I/O columns of a run summary (all None without a job block that has them)."""
    out = _none()
    job = run_summary.get("job") if isinstance(run_summary, Mapping) else None
    if not isinstance(job, Mapping):
        return out
    io, net = job.get("io"), job.get("network")
    if isinstance(io, Mapping):
        out["job_io_read_bytes"] = bigint(io.get("read_bytes"))
        out["job_io_write_bytes"] = bigint(io.get("write_bytes"))
        out["job_io_source"] = _source(io)
    if isinstance(net, Mapping):
        out["job_net_rx_bytes"] = bigint(net.get("rx_bytes"))
        out["job_net_tx_bytes"] = bigint(net.get("tx_bytes"))
    return out


def io_columns_of_text(payload_text: Any) -> dict[str, Any]:
    """:func:`io_columns` of a stored payload (JSON text), for the backfill: a payload
    whose text mentions neither ``"io"`` nor ``"network"`` is not parsed."""
    if not isinstance(payload_text, str) or (
        '"io"' not in payload_text and '"network"' not in payload_text
    ):
        return _none()
    try:
        summary = orjson.loads(payload_text)
    except orjson.JSONDecodeError:
        return _none()
    return io_columns(summary)
