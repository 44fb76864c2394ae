"""Execution context from the CI environment: GitHub names first, Gitea/Forgejo fallbacks."""

from __future__ import annotations

from resmon.execution import execution_from_env, missing_required


def test_github_variables():
    env = {
        "GITHUB_REPOSITORY_OWNER": "my-org",
        "GITHUB_REPOSITORY": "my-org/my-repo",
        "GITHUB_WORKFLOW": "ci.yml",
        "GITHUB_JOB": "build",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITEA_REPO": "ignored",
    }
    assert execution_from_env(env) == {
        "organization": "my-org",
        "repository": "my-org/my-repo",
        "workflow": "ci.yml",
        "job": "build",
        "run_id": "42",
        "run_attempt": "2",
    }


def test_gitea_fallback_when_github_is_unset_or_empty():
    env = {
        "GITHUB_REPOSITORY_OWNER": "",
        "GITEA_REPO_OWNER": "forge",
        "GITEA_REPO": "forge/app",
        "GITHUB_WORKFLOW": "  ",
        "GITEA_WORKFLOW": "test.yml",
        "GITEA_JOB": "unit",
        "GITEA_RUN_ID": "7",
    }
    execution = execution_from_env(env)
    assert execution == {
        "organization": "forge",
        "repository": "forge/app",
        "workflow": "test.yml",
        "job": "unit",
        "run_id": "7",
    }
    assert missing_required(execution) == []


def test_nothing_set_gives_empty_fields_and_names_the_run_id_variables():
    execution = execution_from_env({})
    assert set(execution.values()) == {""} and "run_attempt" not in execution
    assert missing_required(execution) == ["GITHUB_RUN_ID (or GITEA_RUN_ID)"]


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_ID", "99")
    assert execution_from_env()["run_id"] == "99"
