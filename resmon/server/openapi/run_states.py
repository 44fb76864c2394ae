"""The OpenAPI properties of a run's state, shared by the read API's rows
(:mod:`resmon.server.openapi.read_api`) and the advice API's
(:mod:`resmon.server.openapi.advice_api`)."""

from __future__ import annotations

from typing import Any

STATE = {
    "type": "string",
    "enum": ["running", "finished", "lost"],
    "description": (
        "running: its collector is streaming batches (resmon collect --live-interval) and "
        "the run has no figures until its final push; finished: its final push is stored "
        "(every run pushed whole); lost: its batches stopped without a final push "
        "(serve --live-timeout), its figures are a partial summary of its streamed "
        "samples. A final push after lost finishes it."
    ),
}
PARTIAL = {
    "type": "boolean",
    "description": (
        "The figures are a lost run's partial summary, from its streamed samples up to "
        "where they stopped: CPU-seconds and duration stop there, the memory peak is a "
        "lower bound."
    ),
}
HOST = {
    "type": ["string", "null"],
    "maxLength": 255,
    "description": "The runner host it ran on (RUNNER_NAME, else the hostname); null for "
    "a run that was not streamed.",
}
RUN_STATE_PROPERTIES: dict[str, Any] = {"state": STATE, "partial": PARTIAL, "host": HOST}
LAST_RUN_STATE_PROPERTIES: dict[str, Any] = {
    f"last_{k}": v for k, v in RUN_STATE_PROPERTIES.items()
}
LIVE_RUN_PROPERTIES: dict[str, Any] = {
    "live_interval_seconds": {
        "type": ["number", "null"],
        "description": "How often its collector sent a batch; null for a run pushed whole.",
    },
    "last_batch_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "When its last batch was stored; null for a run pushed whole.",
    },
}
PARTIAL_RUNS = {
    "type": "integer",
    "minimum": 0,
    "description": (
        "How many of the runs counted are lost runs with partial figures. Running runs "
        "are never counted: they have no figures yet."
    ),
}
