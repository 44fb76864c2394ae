"""CGROUP_PROCESS_MAP / CGROUP_LIMITS parsing and container names for cgroup paths."""

from __future__ import annotations

import pytest

from resmon.collect.containers import (
    ConfigError,
    Limits,
    container_name_for_path,
    parse_limits,
    parse_process_map,
)

CID = "0123456789abcdef" * 4


def test_process_map():
    assert parse_process_map(None) == {}
    assert parse_process_map("  ") == {}
    assert parse_process_map('{"node": "runner", "resource-collec": "collector"}') == {
        "node": "runner",
        "resource-collec": "collector",
    }


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "invalid JSON"),
        ('["node"]', "expected a JSON object"),
        ('{"node": 3}', "must be a non-empty string"),
        ('{"node": ""}', "must be a non-empty string"),
        ('{"": "runner"}', "empty process name"),
    ],
)
def test_process_map_errors_name_the_variable_and_value(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_process_map(text)
    message = str(info.value)
    assert message.startswith("CGROUP_PROCESS_MAP: ")
    assert fragment in message


def test_limits_reference_example():
    text = (
        '{"runner": {"cpu": "2", "memory": "1Gi"}, "sidecar": {"cpu": "500m", "memory": "256Mi"}}'
    )
    assert parse_limits(text) == {
        "runner": Limits(cpu_cores=2.0, memory_bytes=1073741824),
        "sidecar": Limits(cpu_cores=0.5, memory_bytes=268435456),
    }


def test_limits_quantities_and_partial():
    limits = parse_limits(
        '{"a": {"cpu": " 1.5 ", "memory": "1e3"}, "b": {"memory": "1G"}, "c": {"cpu": 2}, "d": {}}'
    )
    assert limits["a"] == Limits(1.5, 1000)
    assert limits["b"] == Limits(None, 1000000000)
    assert limits["c"] == Limits(2.0, None)
    assert limits["d"] == Limits(None, None)
    assert parse_limits("") == {}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"runner": {"cpu": "abc"}}', "'runner' cpu: invalid CPU quantity 'abc'"),
        ('{"runner": {"memory": "12XB"}}', "'runner' memory: invalid memory quantity '12XB'"),
        ('{"runner": {"memory": ""}}', "'runner' memory: invalid memory quantity ''"),
        ('{"runner": {"cpu": "0"}}', "must be positive"),
        ('{"runner": {"cpu": true}}', "invalid CPU quantity True"),
        ('{"runner": {"cpus": "1"}}', "unknown key(s) 'cpus'"),
        ('{"runner": "2"}', "must be an object"),
        ('{"runner": {"cpu": "2"}', "invalid JSON"),
        ("[]", "expected a JSON object"),
    ],
)
def test_limits_errors_name_the_variable_and_value(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_limits(text)
    message = str(info.value)
    assert message.startswith("CGROUP_LIMITS: ")
    assert fragment in message


def test_error_source_is_configurable():
    with pytest.raises(ConfigError, match=r"^--limits: "):
        parse_limits("{", source="--limits")
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "path, name",
    [
        (f"/docker/{CID}", CID[:12]),
        (f"/system.slice/docker-{CID}.scope", CID[:12]),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{CID}.scope",
            CID[:12],
        ),
        (f"/kubepods/besteffort/pod1234/{CID}", CID[:12]),
        (f"/kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope", CID[:12]),
        (f"/machine.slice/libpod-{CID}.scope", CID[:12]),
        ("/", "host"),
        ("", "unknown"),
        ("/user.slice/user-1000.slice", "/user.slice/user-1000.slice"),
        ("/docker/abc123", "/docker/abc123"),  # not a full id: kept as the path
        (
            "/process_api/ff379a803c448eb3ed260213ea3d5b72",
            "/process_api/ff379a803c448eb3ed260213ea3d5b72",
        ),
    ],
)
def test_container_name_for_path(path, name):
    assert container_name_for_path(path) == name
