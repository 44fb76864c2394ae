"""OpenAPI paths of the advice read API (:mod:`resmon.server.advice_api`):
recommendations of one job and of the fleet, and the regressions flagged at push;
and the push answer's ``comparison`` (:data:`COMPARISON`, used by the PushResult
component)."""

from __future__ import annotations

from typing import Any

from resmon.server.openapi.common import json_response
from resmon.server.openapi.read_api import (
    INTEGER,
    LIMIT,
    NUMBER,
    SCOPE_NOTE,
    SCOPE_PARAMS,
    SCOPE_PROPERTIES,
    STRING,
    TIME,
    TRUNCATED_HEADER,
    UNTIL,
    WINDOW,
    _get,
    _param,
)
from resmon.server.openapi.run_states import PARTIAL_RUNS

METRIC = {
    "type": "string",
    "enum": ["cpu_seconds", "cpu_cores_p95", "memory_bytes_peak", "duration_seconds"],
    "description": (
        "cpu_seconds (CPU time, s), cpu_cores_p95 (cores), memory_bytes_peak (bytes), "
        "duration_seconds (the job's only)."
    ),
}
TEST = {
    "type": ["string", "null"],
    "enum": ["single", "shift", None],
    "description": "Which test flagged the figure; null when neither did.",
}
FIGURE = {
    "type": "object",
    "required": ["scope", "container", "metric", "value", "median", "regression"],
    "properties": {
        "scope": {"type": "string", "enum": ["job", "container"]},
        "container": {"type": ["string", "null"], "description": "Null for the job's figures."},
        "metric": METRIC,
        "value": {"type": "number", "description": "The pushed run's figure."},
        "median": {"type": "number", "description": "The baseline's median."},
        "mad": {"type": "number", "description": "The baseline's median absolute deviation."},
        "baseline_runs": {"type": "integer", "description": "Earlier runs with this figure."},
        "change": {**NUMBER, "description": "(value - median) / median; null for a 0 median."},
        "robust_score": {
            **NUMBER,
            "description": "(value - median) / (1.4826 x MAD); null when MAD is 0.",
        },
        "regression": {
            "type": "boolean",
            "description": (
                "Flagged by one of two tests (`test`), each also needing more than "
                "`thresholds.change` of the median and a figure's smallest change. single: "
                "the run alone, above the median by more than `thresholds.mad` x 1.4826 x "
                "MAD. shift: a step that stays, the median of the last `runs` runs (2 up to "
                "`thresholds.shift_runs`, this one included) above the median of the runs "
                "before them by more than `thresholds.shift` standard errors of the two "
                "medians; flagged once, at the run that completes the evidence."
            ),
        },
        "test": TEST,
        "runs": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "Over how many runs the test flagged it: 1 for single; null "
            "when not flagged.",
        },
        "shift": {
            "type": ["object", "null"],
            "description": "The shift test's figures when it flagged the run, else null.",
            "properties": {
                "runs": {"type": "integer", "description": "The m runs of the step."},
                "median_before": {"type": "number", "description": "Median of the runs before."},
                "sigma_before": {
                    "type": "number",
                    "description": "Their robust spread: the larger of Qn and 1.4826 x MAD.",
                },
                "baseline_runs": {"type": "integer", "description": "How many runs before."},
                "median_recent": {"type": "number", "description": "Median of the m runs."},
                "change": {**NUMBER, "description": "Of the medians; null for a 0 median."},
                "score": {
                    **NUMBER,
                    "description": "The difference over its standard error; null for no spread.",
                },
            },
        },
    },
}
COMPARISON = {
    "type": "object",
    "description": (
        "Additive: the pushed run against its job's baseline, the median and MAD of the "
        "job's finished runs received before it within `serve --baseline-window` (at most "
        "`--baseline-runs`; running and lost runs are not in a baseline). Absent for a "
        "job's first run and with --baseline-runs 0. A figure is compared once 5 earlier "
        "runs have it."
    ),
    "required": ["baseline_runs", "thresholds", "regressions", "figures"],
    "properties": {
        "baseline_runs": {"type": "integer"},
        "window_days": {"type": "number"},
        "baseline_since": TIME,
        "thresholds": {
            "type": "object",
            "description": "serve --regression-mad, --regression-change, --regression-shift "
            "and --regression-shift-runs.",
            "properties": {
                "mad": {"type": "number"},
                "change": {"type": "number"},
                "shift": {"type": "number"},
                "shift_runs": {
                    "type": "integer",
                    "description": "The most runs a shift is looked for over (below 2: none).",
                },
            },
        },
        "regressions": {"type": "integer", "description": "How many figures are regressions."},
        "figures": {"type": "array", "items": FIGURE},
    },
}
SINCE_30D = _param(
    "since",
    "Runs received at or after (default 30d): a period back from now or a date/time.",
)
RUNS = _param(
    "runs",
    "At most this many runs of a job, the newest (default 100, capped at 1000).",
    {"type": "integer", "minimum": 1},
)
BACKTEST = {
    "type": "object",
    "description": (
        "The method replayed on the job's runs: sized from runs 1..k, checked on run k+1. "
        "memory_fit_rate: runs whose peak stayed under the memory limit (an OOM-killed "
        "run never fits); cpu_fit_rate: runs whose CPU p95 stayed under the CPU limit; "
        "waste: limit minus use, averaged over the runs that fitted."
    ),
    "properties": {
        k: v
        for k, v in {
            "steps": {"type": "integer"},
            "memory_checked": {"type": "integer"},
            "memory_fits": {"type": "integer"},
            "memory_fit_rate": NUMBER,
            "memory_waste_bytes": NUMBER,
            "cpu_checked": {"type": "integer"},
            "cpu_fits": {"type": "integer"},
            "cpu_fit_rate": NUMBER,
            "cpu_waste_cores": NUMBER,
        }.items()
    },
}
RISK = {
    "oom_killed_runs": {"type": "integer"},
    "throttled_runs": {"type": "integer"},
    "near_memory_limit_runs": {
        "type": "integer",
        "description": "Runs whose memory peak came within 10 % of their memory limit.",
    },
}
RECOMMENDATION = {
    "type": "object",
    "description": (
        "status ok: a recommendation; insufficient_runs: fewer than 3 runs, runs_needed "
        "says how many more. CPU in cores, memory in bytes; memory_request = memory_limit, "
        "never below the largest peak. cpu_limit_cores is null when cpu_limit_advice is "
        "none (cpu_limit_reason says why; cpu_limit_if_set_cores is the figure if one "
        "must be set). difference: recommended limit minus the last run's limit."
    ),
    "required": ["status", "runs", "runs_needed"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "insufficient_runs"]},
        "runs": {"type": "integer"},
        "runs_needed": {"type": "integer"},
        "message": STRING,
        "first_day": {"type": ["string", "null"]},
        "last_day": {"type": ["string", "null"]},
        "cpu_request_cores": NUMBER,
        "cpu_limit_cores": NUMBER,
        "cpu_limit_advice": {"type": "string", "enum": ["set", "none"]},
        "cpu_limit_reason": {"type": ["string", "null"]},
        "cpu_limit_if_set_cores": NUMBER,
        "memory_request_bytes": NUMBER,
        "memory_limit_bytes": NUMBER,
        "memory_peak_max_bytes": NUMBER,
        "cpu_cores_p95_max": NUMBER,
        "current": {
            "type": "object",
            "properties": {"cpu_limit_cores": NUMBER, "memory_limit_bytes": NUMBER},
        },
        "difference": {
            "type": "object",
            "properties": {"cpu_limit_cores": NUMBER, "memory_limit_bytes": NUMBER},
        },
        "confidence": {
            "type": "object",
            "properties": {
                "level": {"type": "string", "enum": ["high", "medium", "low"]},
                "runs": {"type": "integer"},
                "span_days": {"type": "number"},
                "spread": {"type": "number"},
                "reasons": {"type": "array", "items": STRING},
            },
        },
        "risk": {"type": "object", "properties": RISK},
        "backtest": {
            "type": "object",
            "properties": {"resmon": BACKTEST, "ci_sizer": BACKTEST, "vpa": BACKTEST},
        },
    },
}
RUNS_WINDOW = {**WINDOW, "runs_limit": {"type": "integer"}}
FLEET_ROW = {
    "type": "object",
    "properties": {
        **SCOPE_PROPERTIES,
        "runs": {"type": "integer"},
        "partial_runs": PARTIAL_RUNS,
        "status": {"type": "string", "enum": ["ok", "insufficient_runs"]},
        "runs_needed": {"type": "integer"},
        "confidence": {"type": ["string", "null"]},
        "cpu_request_cores": NUMBER,
        "cpu_limit_cores": NUMBER,
        "cpu_limit_advice": {"type": ["string", "null"]},
        "memory_limit_bytes": NUMBER,
        "memory_peak_max_bytes": NUMBER,
        "current_cpu_limit_cores": NUMBER,
        "current_memory_limit_bytes": NUMBER,
        "frees_cpu_cores": {**NUMBER, "description": "Current minus recommended CPU limit."},
        "frees_memory_bytes": {
            **NUMBER,
            "description": "Current minus recommended memory limit (negative: it needs more).",
        },
        **RISK,
        "risk_runs": {"type": "integer"},
        "memory_fit_rate": NUMBER,
    },
}
REGRESSION_RUN = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        **SCOPE_PROPERTIES,
        "run_id": STRING,
        "run_attempt": STRING,
        "received_at": TIME,
        "start_time": TIME,
        "regressions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "container": {"type": ["string", "null"]},
                    "metric": METRIC,
                    "value": {"type": "number"},
                    "median": {"type": "number"},
                    "mad": {"type": "number"},
                    "change": NUMBER,
                    "baseline_runs": INTEGER,
                    "test": {**TEST, "type": "string", "enum": ["single", "shift"]},
                    "runs": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Over how many runs: 1 for single, the step's "
                        "runs for shift (flags stored before schema 8 without an "
                        "event: single, 1).",
                    },
                },
            },
        },
    },
}


def paths() -> dict[str, Any]:
    return {
        "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/recommendation": _job(),
        "/api/v1/recommendations": _fleet(),
        "/api/v1/regressions": _regressions(),
    }


def _job() -> dict[str, Any]:
    return _get(
        "jobRecommendation",
        "Requests and limits for one job and each of its containers, backtested",
        "From the job's runs in the window (default the last 30 days, at most 100 runs; "
        "running runs are not read, lost ones count with their partial figures, see "
        "`partial_runs`): "
        "the recommendation, its confidence, the runs' current limits and the difference, "
        "the runs at risk, and the backtest of resmon, CI Sizer and VPA on the same runs."
        + SCOPE_NOTE,
        [*SCOPE_PARAMS, SINCE_30D, UNTIL, RUNS],
        json_response(
            "The job's recommendation and each container's.",
            {
                "type": "object",
                "required": ["job_recommendation", "containers"],
                "properties": {
                    **SCOPE_PROPERTIES,
                    **RUNS_WINDOW,
                    "partial_runs": PARTIAL_RUNS,
                    "job_recommendation": RECOMMENDATION,
                    "containers": {
                        "type": "array",
                        "items": {
                            **RECOMMENDATION,
                            "properties": {"name": STRING, **RECOMMENDATION["properties"]},
                        },
                    },
                },
            },
        ),
        "/api/v1/jobs/<path:scope>/recommendation",
    )


def _fleet() -> dict[str, Any]:
    return _get(
        "fleetRecommendations",
        "Every job's recommendation, ranked by what it would free or by risk",
        "by=free (default): by the memory the recommended limit frees against the last "
        "run's limit, then the cores; by=risk: by the runs OOM-killed, throttled or within "
        "10 % of their memory limit. At most `limit` jobs (default 50, capped at 1000).",
        [
            SINCE_30D,
            UNTIL,
            RUNS,
            _param("by", "How to rank.", {"type": "string", "enum": ["free", "risk"]}),
            LIMIT,
        ],
        json_response(
            "The ranked jobs; `truncated` when more matched.",
            {
                "type": "object",
                "required": ["by", "jobs"],
                "properties": {
                    **RUNS_WINDOW,
                    "by": {"type": "string", "enum": ["free", "risk"]},
                    "limit": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                    "jobs": {"type": "array", "items": FLEET_ROW},
                },
            },
            TRUNCATED_HEADER,
        ),
    )


def _regressions() -> dict[str, Any]:
    return _get(
        "listRegressions",
        "Runs flagged as regressions when they were pushed, newest first",
        "Each run with the figures flagged and the baseline they were compared with. At "
        "most `limit` runs (default 100, capped at 1000).",
        [
            _param("since", "Runs received at or after (default 7d)."),
            UNTIL,
            LIMIT,
        ],
        json_response(
            "The flagged runs.",
            {
                "type": "object",
                "required": ["runs"],
                "properties": {
                    **WINDOW,
                    "limit": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                    "runs": {"type": "array", "items": REGRESSION_RUN},
                },
            },
            TRUNCATED_HEADER,
        ),
    )
