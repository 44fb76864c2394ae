"""OpenAPI pieces of a run's context and steps (schema version 11): the context
columns every run row carries, a run's steps, and the ``branch`` parameter of a job's
runs and trend (:mod:`resmon.store.run_context`, :mod:`resmon.store.steps`)."""

from __future__ import annotations

from typing import Any

NAME = {"type": ["string", "null"], "maxLength": 255}
NUMBER = {"type": ["number", "null"]}
INTEGER = {"type": ["integer", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}

CONTEXT_PROPERTIES: dict[str, Any] = {
    "git_ref": {**NAME, "description": "The ref the run built (GITHUB_REF: refs/heads/main)."},
    "branch": {
        **NAME,
        "description": "The branch the run built: a pull request's head branch, else the "
        "pushed branch; null for a tag or when the collector sent no context.",
    },
    "commit_sha": {**NAME, "description": "The commit the run built (GITHUB_SHA)."},
    "event_name": {**NAME, "description": "What started the workflow (push, pull_request...)."},
    "runner_name": {**NAME, "description": "The runner's name (RUNNER_NAME)."},
    "runner_labels": {**NAME, "description": "The runner's labels, comma-separated."},
    "pod_name": {**NAME, "description": "Kubernetes: the pod the job ran in (Downward API)."},
    "pod_namespace": {**NAME, "description": "Kubernetes: the pod's namespace."},
    "node_name": {**NAME, "description": "Kubernetes: the node the pod ran on."},
}

STEP_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "id": {"type": "integer", "description": "The stored step's id (steps pushed apart)."},
        "name": {"type": "string"},
        "start_time": TIME,
        "end_time": TIME,
        "duration_seconds": NUMBER,
        "sample_count": INTEGER,
        "cpu_seconds": {**NUMBER, "description": "The step's own CPU time (its job's)."},
        "memory_bytes_peak": {**INTEGER, "description": "The step's own memory peak."},
        "memory_kind": NAME,
        "exit_code": INTEGER,
        "disk_read_bytes": {**INTEGER, "description": "The step's disk reads, where measured."},
        "disk_write_bytes": {**INTEGER, "description": "The step's disk writes."},
        "net_rx_bytes": {**INTEGER, "description": "The step's network bytes received."},
        "net_tx_bytes": {**INTEGER, "description": "The step's network bytes sent."},
    },
}
STEPS = {
    "type": "array",
    "items": STEP_ROW,
    "description": (
        "The run's steps, in the order they started: the `resmon collect --step NAME` "
        "pushes merged into this run (its CPU time is their sum, its memory peak their "
        "largest), or the segments a sidecar's `resmon collect --mark NAME` marked. Empty "
        "for a run pushed whole without marks."
    ),
}


def branch_param(what: str) -> dict[str, Any]:
    return {
        "name": "branch",
        "in": "query",
        "required": False,
        "description": f"Only the runs that built this branch ({what}).",
        "schema": {"type": "string", "maxLength": 255},
    }
