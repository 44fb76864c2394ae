"""The run's context from the CI environment (resmon.execution.context_from_env) and the
--context option's parsing; the stored columns it gives (resmon.store.run_context)."""

from __future__ import annotations

import pytest

from resmon.execution import context_from_env, parse_context_option
from resmon.store.run_context import context_columns, context_columns_of_text

GITHUB_PUSH = {
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_REF_NAME": "main",
    "GITHUB_REF_TYPE": "branch",
    "GITHUB_SHA": "f" * 40,
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_RUN_ATTEMPT": "3",
    "RUNNER_NAME": "GitHub Actions 12",
}


def test_github_push():
    assert context_from_env(GITHUB_PUSH) == {
        "ref": "refs/heads/main",
        "branch": "main",
        "sha": "f" * 40,
        "event": "push",
        "run_attempt": "3",
        "runner_name": "GitHub Actions 12",
    }


def test_a_pull_request_builds_its_head_branch():
    env = {
        "GITHUB_REF": "refs/pull/7/merge",
        "GITHUB_REF_NAME": "7/merge",
        "GITHUB_HEAD_REF": "feature/x",
        "GITHUB_EVENT_NAME": "pull_request",
    }
    context = context_from_env(env)
    assert (context["branch"], context["ref"]) == ("feature/x", "refs/pull/7/merge")


def test_a_tag_has_no_branch():
    env = {"GITHUB_REF": "refs/tags/v1", "GITHUB_REF_NAME": "v1", "GITHUB_REF_TYPE": "tag"}
    assert "branch" not in context_from_env(env)


def test_forgejo_sets_the_github_names_and_gitea_ones_fall_back():
    env = {"GITEA_REF": "refs/heads/dev", "GITEA_SHA": "abc", "GITEA_RUN_ATTEMPT": "1"}
    assert context_from_env(env) == {
        "ref": "refs/heads/dev",
        "branch": "dev",
        "sha": "abc",
        "run_attempt": "1",
    }


def test_gitlab():
    env = {
        "CI_COMMIT_REF_NAME": "main",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_SHA": "123",
        "CI_PIPELINE_SOURCE": "push",
        "CI_RUNNER_DESCRIPTION": "shared-1",
        "CI_RUNNER_TAGS": '["docker", "linux"]',
    }
    assert context_from_env(env) == {
        "ref": "main",
        "branch": "main",
        "sha": "123",
        "event": "push",
        "runner_name": "shared-1",
        "runner_labels": "docker,linux",
    }


def test_kubernetes_downward_api_and_the_hostname_fallback():
    env = {
        "RESMON_POD_NAME": "job-abc",
        "POD_NAMESPACE": "ci",
        "NODE_NAME": "node-1",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "HOSTNAME": "ignored",
    }
    assert context_from_env(env) == {"pod": "job-abc", "namespace": "ci", "node": "node-1"}
    assert context_from_env({"KUBERNETES_SERVICE_HOST": "x", "HOSTNAME": "pod-7"}) == {
        "pod": "pod-7"
    }
    assert context_from_env({"HOSTNAME": "laptop"}) == {}  # not in a pod


def test_overrides_and_cleaning():
    env = {**GITHUB_PUSH, "RUNNER_LABELS": "self-hosted, linux  x64"}
    context = context_from_env(env, {"branch": "release", "event": "", "node": "n\x00\n1"})
    assert context["branch"] == "release"
    assert "event" not in context
    assert context["node"] == "n1"
    assert context["runner_labels"] == "self-hosted,linux,x64"
    long = context_from_env({"GITHUB_SHA": "a" * 400})
    assert len(long["sha"]) == 255


@pytest.mark.parametrize(
    "text, expected",
    [("branch=main", ("branch", "main")), ("pod=", ("pod", "")), ("sha=a=b", ("sha", "a=b"))],
)
def test_context_option(text, expected):
    assert parse_context_option(text) == expected


@pytest.mark.parametrize("text, error", [("branch", "KEY=VALUE"), ("colour=red", "unknown")])
def test_context_option_errors(text, error):
    with pytest.raises(ValueError, match=error):
        parse_context_option(text)


def test_stored_columns_take_strings_only():
    summary = {"context": {"branch": "main", "sha": 5, "pod": "p\x00", "node": "n" * 300}}
    columns = context_columns(summary)
    assert columns["branch"] == "main"
    assert columns["commit_sha"] is None
    assert columns["pod_name"] == "p"
    assert len(columns["node_name"]) == 255
    assert set(context_columns({"context": "x"}).values()) == {None}
    assert context_columns_of_text('{"context": {"branch": "b"}}')["branch"] == "b"
    assert context_columns_of_text("not json") == context_columns(None)
    assert context_columns_of_text('{"context": 1') == context_columns(None)
