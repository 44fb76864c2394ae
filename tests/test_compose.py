"""compose/ checked statically: no Docker engine runs here.

What would break a `docker compose up` silently is checked against the real code:
every resmon flag the files pass is a parameter of the click command it goes to,
every environment variable is one resmon reads, the image's entry point is the
`resmon` console script, the job-pod stand-in shares one PID namespace, the
collector's process map names real services and its limits repeat theirs, and the
demo push token is the one the server will accept.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml

from resmon.cli import cli
from resmon.tokens import check_push_token
from resmon.units import parse_cpu, parse_memory

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
RESMON_IMAGE = "resmon:local"
WORKLOADS = ("cpu-stress", "mem-stress", "io-stress")

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """What compose makes of ``${VAR:-default}`` with nothing set in the environment."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def resmon_services(services: dict) -> dict:
    return {name: s for name, s in services.items() if s.get("image") == RESMON_IMAGE}


def argv(service: dict) -> list[str]:
    """The full command line a service runs: entry point (the image's: resmon) + command."""
    entrypoint = service.get("entrypoint", ["resmon"])
    command = service.get("command", [])
    if isinstance(entrypoint, str):
        entrypoint = shlex.split(entrypoint)
    if isinstance(command, str):
        command = shlex.split(command)
    return [interpolate(str(x)) for x in [*entrypoint, *command]]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def resolve(args: list[str]) -> tuple[list[click.Command], list[str]]:
    """Walk the click group along ``args``: the commands reached and the remaining tokens."""
    assert args[0] == "resmon", args
    chain: list[click.Command] = [cli]
    rest = args[1:]
    while rest and isinstance(chain[-1], click.Group) and not rest[0].startswith("-"):
        sub = chain[-1].commands.get(rest[0])
        assert sub is not None, (
            f"`resmon {' '.join(c.name for c in chain[1:])} {rest[0]}` is not a resmon command "
            f"(have: {sorted(chain[-1].commands)})"
        )
        chain.append(sub)
        rest = rest[1:]
    return chain, rest


def options_of(chain: list[click.Command]) -> dict[str, click.Parameter]:
    return {opt: p for cmd in chain for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def envvars_of(chain: list[click.Command]) -> set[str]:
    names: set[str] = set()
    for cmd in chain:
        for p in cmd.params:
            envvar = getattr(p, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
    return names


def resmon_source() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "resmon").rglob("*.py"))


def test_files_parse(compose):
    assert set(compose["services"]) >= {"server", "collector", *WORKLOADS}
    for dockerfile in ("Dockerfile", "stress.Dockerfile"):
        text = (COMPOSE_DIR / dockerfile).read_text()
        assert re.search(r"^FROM \S+", text, re.M), dockerfile


def test_builds_point_at_existing_dockerfiles(services):
    built = [s for s in services.values() if "build" in s]
    assert built
    for s in built:
        context = (COMPOSE_DIR / s["build"]["context"]).resolve()
        assert (context / s["build"]["dockerfile"]).is_file(), s["build"]
    # Every image a service runs is either built here or a public one with a tag.
    built_images = {s["image"] for s in built}
    for name, s in services.items():
        assert s["image"] in built_images or re.fullmatch(r"[\w./-]+:[\w.-]+", s["image"]), name


def test_image_entrypoint_is_the_resmon_console_script():
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    entrypoints = re.findall(r"^ENTRYPOINT\s+(.+)$", text, re.M)
    assert [json.loads(e) for e in entrypoints] == [["resmon"]]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["resmon"] == "resmon.cli:cli"
    # What the image copies in must exist, or the build fails at COPY.
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), src


def test_every_resmon_flag_exists(services):
    checked = 0
    for name, service in resmon_services(services).items():
        chain, rest = resolve(argv(service))
        options = options_of(chain)
        for i, token in enumerate(rest):
            if not token.startswith("--"):
                continue
            flag = token.split("=", 1)[0]
            assert flag in options, (
                f"service {name}: `{' '.join(c.name for c in chain)}` has no option {flag} "
                f"(has: {sorted(options)})"
            )
            param = options[flag]
            if not getattr(param, "is_flag", False) and "=" not in token:
                assert i + 1 < len(rest), f"service {name}: {flag} needs a value"
            checked += 1
    assert checked >= 5


def test_every_environment_variable_is_read_by_resmon(services):
    source = resmon_source()
    for name, service in resmon_services(services).items():
        chain, _ = resolve(argv(service))
        known = envvars_of(chain)
        for var in environment(service):
            assert var in known or f'"{var}"' in source, f"service {name}: resmon never reads {var}"


def test_job_pod_shares_one_pid_namespace(services):
    owner = "cpu-stress"
    assert "pid" not in services[owner], "the namespace owner starts its own namespace"
    for name in ("mem-stress", "io-stress", "collector"):
        assert services[name]["pid"] == f"service:{owner}", name
    # The server is not part of the job: it must not see the job's processes.
    assert "pid" not in services["server"]


def test_collector_map_and_limits_name_real_services(services):
    env = environment(services["collector"])
    process_map = json.loads(env["CGROUP_PROCESS_MAP"])
    limits = json.loads(env["CGROUP_LIMITS"])
    job_pod = {n for n, s in services.items() if s.get("pid") == "service:cpu-stress"} | {
        "cpu-stress"
    }
    assert set(process_map.values()) <= job_pod
    assert set(process_map.values()) == set(limits) == set(WORKLOADS) | {"collector"}
    for container, limit in limits.items():
        compose_limits = services[container]["deploy"]["resources"]["limits"]
        assert parse_cpu(limit["cpu"]) == pytest.approx(float(compose_limits["cpus"])), container
        # compose's M and G are binary, like Kubernetes' Mi and Gi.
        amount, unit = re.fullmatch(r"(\d+)([KMG])", compose_limits["memory"]).groups()
        compose_bytes = int(amount) * 1024 ** ("KMG".index(unit) + 1)
        assert parse_memory(limit["memory"]) == compose_bytes, container


def test_collector_pushes_to_the_server_with_an_accepted_token(services):
    server, collector = services["server"], services["collector"]
    args = argv(collector)
    endpoint = urlsplit(args[args.index("--push-endpoint") + 1])
    assert endpoint.hostname == "server" and endpoint.path == "/api/v1/metrics"
    server_args = argv(server)
    assert endpoint.port == int(server_args[server_args.index("--addr") + 1].rsplit(":", 1)[1])
    env, server_env = environment(collector), environment(server)
    assert check_push_token(
        env["COLLECTOR_PUSH_TOKEN"],
        [server_env["RECEIVER_HMAC_KEY"]],
        env["GITHUB_REPOSITORY_OWNER"],
        env["GITHUB_REPOSITORY"],
        env["GITHUB_WORKFLOW"],
        env["GITHUB_JOB"],
    )
    assert collector["depends_on"]["server"]["condition"] == "service_healthy"


def test_server_keeps_its_database_on_a_volume_and_checks_health(compose, services):
    server = services["server"]
    args = argv(server)
    db = args[args.index("--db") + 1]
    mounts = dict(v.split(":", 1) for v in server["volumes"])
    volume = next(
        name for name, target in mounts.items() if db.startswith(target.rstrip("/") + "/")
    )
    assert volume in compose["volumes"]
    test = " ".join(server["healthcheck"]["test"])
    port = args[args.index("--addr") + 1].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/health" in test


def test_query_service_reads_the_server_with_the_read_token(services):
    query, server = services["query"], services["server"]
    chain, _ = resolve(argv(query))
    assert [c.name for c in chain[1:]][:1] == ["query"]
    env = environment(query)
    assert env["RESMON_READ_TOKEN"] == environment(server)["RECEIVER_READ_TOKEN"]
    assert urlsplit(env["RESMON_SERVER"]).hostname == "server"
