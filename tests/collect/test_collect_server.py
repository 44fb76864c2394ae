"""`resmon collect` pushing to a real `resmon serve` (SQLite file), end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import orjson
import pytest
import requests
from server_proc import ServerProcess

from resmon.collect.spool import Spool
from resmon.tokens import push_token

pytestmark = pytest.mark.slow

CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "77",
}


def stored_runs(server: ServerProcess) -> list[dict]:
    r = requests.get(
        server.url + "/api/v1/metrics/repo/acme/widgets/ci.yml/build",
        headers=server.read_headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_wrapped_command_summary_is_stored_once_even_when_delivered_twice(tmp_path):
    spool_dir = tmp_path / "spool"
    with ServerProcess(tmp_path / "metrics.db") as server:
        token = push_token(server.hmac_key, "acme", "acme/widgets", "ci.yml", "build")
        env = {**os.environ, **CI_ENV, "COLLECTOR_PUSH_TOKEN": token}
        out = tmp_path / "records.jsonl"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "resmon",
                "collect",
                "--interval=0.2s",
                f"--push-endpoint={server.url}/api/v1/metrics",
                f"--spool-dir={spool_dir}",
                f"--output={out}",
                "--push-timeout=5s",
                "--",
                "sh",
                "-c",
                "for i in $(seq 20); do awk 'BEGIN{for(i=0;i<50000;i++)s+=i}'; done",
            ],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        summary = orjson.loads(out.read_bytes().splitlines()[-1])
        [run] = stored_runs(server)
        assert run["run_id"] == "77"
        payload = run["payload"]
        assert payload["cpu_seconds"] == summary["cpu_seconds"]
        assert payload["command"]["name"] == "sh"
        assert [c["name"] for c in payload["containers"]] == [
            c["name"] for c in summary["containers"]
        ]
        assert Spool(spool_dir).pending() == []

        # The same spooled body again (as if the 201 had been lost on the way back):
        # same Idempotency-Key, so the server keeps one run.
        spool = Spool(spool_dir)
        entry = spool.add(
            {
                "execution": {
                    **dict(
                        zip(
                            ("organization", "repository", "workflow", "job", "run_id"),
                            ("acme", "acme/widgets", "ci.yml", "build", "78"),
                            strict=True,
                        )
                    )
                },
                "run_summary": payload,
            }
        )
        copy = tmp_path / "copy.json"
        shutil.copy(entry.path, copy)
        for attempt in range(2):
            if attempt:
                shutil.copy(copy, entry.path)
            flush = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "resmon",
                    "collect",
                    "--flush-spool",
                    f"--spool-dir={spool_dir}",
                    f"--push-endpoint={server.url}/api/v1/metrics",
                    "--push-timeout=5s",
                ],
                env=env,
                capture_output=True,
                timeout=60,
            )
            assert flush.returncode == 0, flush.stderr.decode()
            assert b"1 delivered" in flush.stderr
        runs = stored_runs(server)
        assert sorted(r["run_id"] for r in runs) == ["77", "78"]
