"""OpenAPI path of the Prometheus metrics (:mod:`resmon.server.metrics`)."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import with_common


def paths() -> dict[str, Any]:
    return {
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": (
                    "Prometheus text exposition (OpenMetrics when the Accept header asks for "
                    "it). No authentication, as Prometheus expects: no label names an "
                    "organization, repository, job, run or token. With `resmon serve "
                    "--metrics-addr` the metrics are served on that listener only and this path "
                    "answers 404."
                ),
                "responses": with_common(
                    {
                        "200": {
                            "description": "Metrics of every worker process, added up.",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        }
                    }
                ),
            }
        }
    }
