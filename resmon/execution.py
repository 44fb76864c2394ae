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


# --- the run's context ----------------------------------------------------------

# The context fields a run summary carries (``run_summary.context``), and where each
# comes from: GitHub Actions and Forgejo/Gitea Actions (which set the same GITHUB_*
# names), then GitLab CI; on Kubernetes the pod, namespace and node come from the
# Downward API (docs/kubernetes.md), under RESMON_* names or the usual POD_NAME,
# POD_NAMESPACE, NODE_NAME.  ``resmon collect --context KEY=VALUE`` overrides any.
CONTEXT_ENV: dict[str, tuple[str, ...]] = {
    "ref": ("GITHUB_REF", "GITEA_REF", "CI_COMMIT_REF_NAME"),
    "branch": (),  # see _branch
    "sha": ("GITHUB_SHA", "GITEA_SHA", "CI_COMMIT_SHA"),
    "event": ("GITHUB_EVENT_NAME", "GITEA_EVENT_NAME", "CI_PIPELINE_SOURCE"),
    "run_attempt": ("GITHUB_RUN_ATTEMPT", "GITEA_RUN_ATTEMPT"),
    "runner_name": ("RUNNER_NAME", "CI_RUNNER_DESCRIPTION"),
    "runner_labels": ("RUNNER_LABELS", "CI_RUNNER_TAGS"),
    "pod": ("RESMON_POD_NAME", "POD_NAME", "MY_POD_NAME"),
    "namespace": ("RESMON_POD_NAMESPACE", "POD_NAMESPACE", "MY_POD_NAMESPACE"),
    "node": ("RESMON_NODE_NAME", "NODE_NAME", "MY_NODE_NAME"),
}
CONTEXT_KEYS = tuple(CONTEXT_ENV)
MAX_CONTEXT_LEN = 255


def _branch(env: Mapping[str, str]) -> str:
    """The branch a run built: a pull request's head branch (GITHUB_HEAD_REF), else the
    pushed branch (GITHUB_REF_NAME when the ref is a branch), else GitLab's
    (CI_MERGE_REQUEST_SOURCE_BRANCH_NAME, CI_COMMIT_BRANCH).  Empty for a tag."""
    head = _first(env, "GITHUB_HEAD_REF", "GITEA_HEAD_REF")
    if head:
        return head
    ref = _first(env, "GITHUB_REF", "GITEA_REF")
    ref_type = _first(env, "GITHUB_REF_TYPE")
    name = _first(env, "GITHUB_REF_NAME", "GITEA_REF_NAME")
    if name and (ref.startswith("refs/heads/") or (not ref and ref_type in ("", "branch"))):
        return name
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    return _first(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_BRANCH")


def _labels(value: str) -> str:
    """Runner labels as ``a,b,c``: GitLab's CI_RUNNER_TAGS is a JSON array
    (``["docker", "linux"]``), a runner's own variable a comma or space list."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    parts = [p.strip().strip('"').strip() for p in text.replace(" ", ",").split(",")]
    return ",".join(p for p in parts if p)


def clean_context_value(value: str) -> str:
    """A context value as sent: no control characters, at most 255 characters."""
    return "".join(ch for ch in value if ch >= " " and ch != "\x7f")[:MAX_CONTEXT_LEN].strip()


def context_from_env(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The run's context (``run_summary.context``): only the fields that have a value.

    On Kubernetes without the Downward API's pod name, the pod's hostname is its name
    (KUBERNETES_SERVICE_HOST says it runs in a pod)."""
    env = os.environ if env is None else env
    context: dict[str, str] = {}
    for key, names in CONTEXT_ENV.items():
        value = _branch(env) if key == "branch" else _first(env, *names)
        if key == "runner_labels":
            value = _labels(value)
        if key == "pod" and not value and env.get("KUBERNETES_SERVICE_HOST"):
            value = _first(env, "HOSTNAME")
        value = clean_context_value(value)
        if value:
            context[key] = value
    for key, value in (overrides or {}).items():
        value = clean_context_value(value)
        if value:
            context[key] = value
        else:
            context.pop(key, None)
    return context


def parse_context_option(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--context``: a known key (:data:`CONTEXT_KEYS`), any value
    (empty: the field is left out).  A ValueError says what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"{text!r} is not KEY=VALUE")
    if key not in CONTEXT_KEYS:
        raise ValueError(f"unknown context key {key!r}: use one of {', '.join(CONTEXT_KEYS)}")
    return key, value
