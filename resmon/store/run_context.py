"""A run's context as stored columns: which branch and commit it built, on what event,
which runner, and on Kubernetes which pod, namespace and node.

The collector sends it as ``run_summary.context`` (:func:`resmon.execution.context_from_env`),
an additive field the Go receiver keeps inside the payload it stores.  Pure: the push
(:mod:`resmon.store.derive`) and the version-11 backfill
(:mod:`resmon.store.migrations_context`) derive the columns the same way.  The summary's
``context`` is not checked on a push beyond being an object (a peer may send anything
there): what is not a string is left out, and text is cut to the column's length.
"""

from __future__ import annotations

from typing import Any

import orjson

from resmon.store.values import name as _name

# Column -> the context field it comes from.  One place, so the model, the migration,
# the read API rows and the query tables name the same columns.
CONTEXT_COLUMNS: dict[str, str] = {
    "git_ref": "ref",
    "branch": "branch",
    "commit_sha": "sha",
    "event_name": "event",
    "runner_name": "runner_name",
    "runner_labels": "runner_labels",
    "pod_name": "pod",
    "pod_namespace": "namespace",
    "node_name": "node",
}


def context_columns(run_summary: Any) -> dict[str, str | None]:
    """The context columns of a run summary; all None without a ``context`` object."""
    context = run_summary.get("context") if isinstance(run_summary, dict) else None
    if not isinstance(context, dict):
        return dict.fromkeys(CONTEXT_COLUMNS)
    return {column: _name(context.get(field)) for column, field in CONTEXT_COLUMNS.items()}


def context_columns_of_text(payload_text: Any) -> dict[str, str | None]:
    """:func:`context_columns` of a stored payload (JSON text), for a backfill; a text
    without ``"context"`` is not parsed."""
    if not isinstance(payload_text, str) or '"context"' not in payload_text:
        return context_columns(None)
    try:
        summary = orjson.loads(payload_text)
    except orjson.JSONDecodeError:
        summary = None
    return context_columns(summary)
