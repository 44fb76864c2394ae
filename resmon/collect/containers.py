"""Containers: CGROUP_PROCESS_MAP, CGROUP_LIMITS and readable names for cgroup paths.

A container is a group of processes that share a cgroup path.  Its name comes from
``CGROUP_PROCESS_MAP`` (a process with a mapped name names its whole cgroup path)
or, failing that, from the path itself (:func:`container_name_for_path`):

- a docker, containerd or cri-o container id (64 hex characters) in the last path
  component is shortened to its first 12 characters, as ``docker ps`` shows it:
  ``/docker/<id>``, ``/system.slice/docker-<id>.scope``,
  ``/kubepods/.../cri-containerd-<id>.scope``, ``/kubepods/.../crio-<id>.scope``,
  ``/kubepods/besteffort/pod<uid>/<id>`` all become ``<id[:12]>``;
- the root cgroup ``/`` (everything not in a container: the host, or the whole
  pod when the sidecar has its own cgroup namespace) is named ``host``;
- a process whose cgroup could not be read at all is in ``unknown``;
- any other path is kept as it is (``/user.slice/user-1000.slice``).

Malformed configuration is an error at start-up naming the variable and the bad
value (the Go collector ignores it silently; resmon must not).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from resmon.units import parse_cpu, parse_memory

HOST_CONTAINER = "host"
UNKNOWN_CONTAINER = "unknown"

_CONTAINER_ID = re.compile(
    r"^(?:(?:docker|cri-containerd|containerd|crio|libpod|cri-o)-)?([0-9a-f]{64})(?:\.scope)?$"
)


class ConfigError(ValueError):
    """Bad CGROUP_PROCESS_MAP / CGROUP_LIMITS; the message names the variable and the value."""


@dataclass(frozen=True)
class Limits:
    cpu_cores: float | None = None
    memory_bytes: int | None = None


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _load_json_object(text: str, source: str) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON ({exc.msg}) in {_short(text)!r}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {_short(text)!r}")
    return obj


def parse_process_map(text: str | None, *, source: str = "CGROUP_PROCESS_MAP") -> dict[str, str]:
    """``{"process name": "container name"}``; empty or unset means no mapping."""
    if text is None or not text.strip():
        return {}
    obj = _load_json_object(text, source)
    out: dict[str, str] = {}
    for name, container in obj.items():
        if not isinstance(container, str) or not container.strip():
            raise ConfigError(
                f"{source}: the container for process {name!r} must be a non-empty string, "
                f"got {container!r}"
            )
        if not name:
            raise ConfigError(f"{source}: empty process name (mapped to {container!r})")
        out[name] = container.strip()
    return out


def parse_limits(text: str | None, *, source: str = "CGROUP_LIMITS") -> dict[str, Limits]:
    """``{"container": {"cpu": "500m", "memory": "256Mi"}}`` in Kubernetes quantities."""
    if text is None or not text.strip():
        return {}
    obj = _load_json_object(text, source)
    out: dict[str, Limits] = {}
    for container, spec in obj.items():
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{source}: the limits of {container!r} must be an object like "
                f'{{"cpu": "500m", "memory": "256Mi"}}, got {spec!r}'
            )
        unknown = set(spec) - {"cpu", "memory"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(sorted(map(repr, unknown)))} in the limits "
                f"of {container!r} (use 'cpu' and 'memory')"
            )
        cpu = memory = None
        if spec.get("cpu") is not None:
            value = spec["cpu"]
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f"invalid CPU quantity {value!r}")
                cpu = parse_cpu(str(value))
            except ValueError as exc:
                raise ConfigError(f"{source}: {container!r} cpu: {exc}") from None
            if cpu <= 0:
                raise ConfigError(f"{source}: {container!r} cpu: limit {value!r} must be positive")
        if spec.get("memory") is not None:
            value = spec["memory"]
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f"invalid memory quantity {value!r}")
                memory = parse_memory(str(value))
            except ValueError as exc:
                raise ConfigError(f"{source}: {container!r} memory: {exc}") from None
            if memory <= 0:
                raise ConfigError(
                    f"{source}: {container!r} memory: limit {value!r} must be positive"
                )
        out[container] = Limits(cpu_cores=cpu, memory_bytes=memory)
    return out


def container_name_for_path(cgroup_path: str) -> str:
    """A readable container name for a cgroup path (see the module docstring)."""
    path = cgroup_path.strip()
    if not path:
        return UNKNOWN_CONTAINER
    if path == "/":
        return HOST_CONTAINER
    last = path.rstrip("/").rsplit("/", 1)[-1]
    m = _CONTAINER_ID.match(last)
    if m:
        return m.group(1)[:12]
    return path
