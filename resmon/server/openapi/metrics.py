"""OpenAPI path of the Prometheus metrics (:mod:`resmon.server.metrics`)."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import UNAUTHORIZED, error_response, with_common


def paths() -> dict[str, Any]:
    return {
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": (
                    "Prometheus text exposition (OpenMetrics when the Accept header asks for "
                    "it), to the read token (Prometheus: `authorization` in the scrape config). "
                    "No label names an organization, repository, job, run or token. With "
                    "`resmon serve --no-metrics-on-addr`, or `--metrics-addr` without "
                    "`--metrics-on-addr`, this path answers 404 (the separate listener has no "
                    "authentication and answers /metrics only)."
                ),
                "security": [{"readToken": []}],
                "responses": with_common(
                    {
                        "200": {
                            "description": "Metrics of every worker process, added up.",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        },
                        "401": UNAUTHORIZED,
                        "403": error_response(
                            "An organisation's read token: only the server's reads metrics."
                        ),
                    }
                ),
            }
        }
    }
