"""A real ``resmon serve`` subprocess on a free loopback port, for end-to-end tests.

    with ServerProcess(tmp_path / "metrics.db") as server:
        requests.get(server.url + "/health")
        server.push(payload)               # signed with server.hmac_key
    # stopped with SIGTERM; server.returncode, server.stderr_text() for the logs

Also a pytest fixture ``live_server`` (SQLite file under tmp_path) for tests that
import it.  The database may be a PostgreSQL URL (see tests/pg.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from resmon.tokens import push_token

RESMON = [sys.executable, "-m", "resmon"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        database: str | os.PathLike[str],
        *,
        read_token: str | None = None,
        hmac_keys: tuple[str, ...] | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.database = str(database)
        self.read_token = read_token or secrets.token_hex(16)
        self.hmac_keys = hmac_keys or (secrets.token_hex(16),)
        self.extra_args = extra_args
        self.env = env
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hmac_key(self) -> str:
        return self.hmac_keys[0]

    @property
    def read_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_token}"}

    def push_headers(self, execution: dict[str, Any]) -> dict[str, str]:
        token = push_token(
            self.hmac_key,
            execution["organization"],
            execution["repository"],
            execution["workflow"],
            execution["job"],
        )
        return {"Authorization": f"Bearer {token}"}

    def push(self, payload: dict[str, Any], **kwargs: Any) -> requests.Response:
        headers = {**self.push_headers(payload["execution"]), **kwargs.pop("headers", {})}
        return requests.post(
            self.url + "/api/v1/metrics", json=payload, headers=headers, timeout=10, **kwargs
        )

    def start(self) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        # Secrets through the environment, as a deployment would (not on argv).
        env["RECEIVER_READ_TOKEN"] = self.read_token
        # RECEIVER_HMAC_KEY is one key, verbatim; the others, older ones, are a rotation list.
        env["RECEIVER_HMAC_KEY"] = self.hmac_keys[0]
        if len(self.hmac_keys) > 1:
            env["RESMON_HMAC_KEYS"] = "\n".join(self.hmac_keys[1:])
        cmd = [
            *RESMON,
            "serve",
            f"--addr=127.0.0.1:{self.port}",
            f"--db={self.database}",
            "--workers=1",
            "--threads=4",
            "--graceful-timeout=10",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"resmon serve exited with {self.proc.returncode}:\n{self.stderr_text()}"
                )
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"resmon serve not ready in {self.startup_timeout} s:\n{self.stderr_text()}"
        )

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The session holds the arbiter and its workers: take them all down.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.terminate()
        finally:
            self.kill()


@pytest.fixture
def live_server(tmp_path: Path):
    with ServerProcess(tmp_path / "metrics.db") as server:
        yield server


def sample_payload(
    run_id: str = "1",
    *,
    organization: str = "my-org",
    repository: str = "my-org/my-repo",
    workflow: str = "ci.yml",
    job: str = "build",
    start_time: str = "2026-01-02T03:04:05Z",
    **summary: Any,
) -> dict[str, Any]:
    """A push payload in the wire format, with one container."""
    stat = {"peak": 2.0, "p99": 1.9, "p95": 1.5, "p75": 1.0, "p50": 0.5, "avg": 0.7}
    run_summary: dict[str, Any] = {
        "start_time": start_time,
        "end_time": "2026-01-02T03:14:05Z",
        "duration_seconds": 600.0,
        "sample_count": 600,
        "cpu_total_percent": {
            "peak": 95.0,
            "p99": 90.0,
            "p95": 80.0,
            "p75": 50.0,
            "p50": 30.0,
            "avg": 35.5,
        },
        "mem_used_bytes": {
            "peak": 2_000_000_000,
            "p99": 1.9e9,
            "p95": 1.8e9,
            "p75": 1e9,
            "p50": 5e8,
            "avg": 7e8,
        },
        "mem_used_percent": {"peak": 50.0, "p99": 48, "p95": 45, "p75": 25, "p50": 12, "avg": 17.5},
        "top_cpu_processes": [
            {"pid": 42, "name": "cc1", "peak_cpu_percent": 99.5, "peak_mem_rss_bytes": 1e8}
        ],
        "top_mem_processes": [
            {"pid": 42, "name": "cc1", "peak_cpu_percent": 99.5, "peak_mem_rss_bytes": 1e8}
        ],
        "containers": [
            {
                "name": "runner",
                "cpu_cores": stat,
                "memory_bytes": {
                    "peak": 1_073_741_824,
                    "p99": 1e9,
                    "p95": 9e8,
                    "p75": 5e8,
                    "p50": 3e8,
                    "avg": 4.5e8,
                },
                "cpu_seconds": 420.5,
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": 2_147_483_648,
            }
        ],
    }
    run_summary.update(summary)
    return {
        "execution": {
            "organization": organization,
            "repository": repository,
            "workflow": workflow,
            "job": job,
            "run_id": run_id,
        },
        "run_summary": run_summary,
    }
