"""The execution context of a run: which org/repo/workflow/job/run it belongs to.

Read from the CI environment the way the Go collector does: each ``GITHUB_*``
variable, and when it is unset or empty, its ``GITEA_*`` counterpart (Forgejo and
Gitea runners set those).  The result is the ``execution`` object of the push
payload; ``run_attempt`` is additive (GitHub re-runs keep the run id).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# (payload field, GitHub variable, Gitea/Forgejo fallback)
EXECUTION_ENV: tuple[tuple[str, str, str], ...] = (
    ("organization", "GITHUB_REPOSITORY_OWNER", "GITEA_REPO_OWNER"),
    ("repository", "GITHUB_REPOSITORY", "GITEA_REPO"),
    ("workflow", "GITHUB_WORKFLOW", "GITEA_WORKFLOW"),
    ("job", "GITHUB_JOB", "GITEA_JOB"),
    ("run_id", "GITHUB_RUN_ID", "GITEA_RUN_ID"),
)
RUN_ATTEMPT_ENV = ("GITHUB_RUN_ATTEMPT", "GITEA_RUN_ATTEMPT")


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def execution_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``execution`` object from the environment (missing values are empty strings).

    The repository is kept exactly as the CI system gives it: the push token is an
    HMAC over the repository as spelled, and the server accepts both spellings.
    """
    env = os.environ if env is None else env
    execution = {field: _first(env, github, gitea) for field, github, gitea in EXECUTION_ENV}
    attempt = _first(env, *RUN_ATTEMPT_ENV)
    if attempt:
        execution["run_attempt"] = attempt
    return execution


def missing_required(execution: Mapping[str, str]) -> list[str]:
    """The environment variables to set for fields the server requires (only the run id:
    a push without one is answered 400), for a warning before the run ends."""
    if execution.get("run_id"):
        return []
    _, github, gitea = EXECUTION_ENV[-1]
    return [f"{github} (or {gitea})"]
