"""Server time per web page with 100,000 stored runs.

    .venv/bin/python bench/web.py [--runs 100000] [--jobs 200] [--requests 30]

Seeds a temporary SQLite file as bench/query_api.py does (100,000 runs over 90
days, two containers each), fills the job figures from the ``runner`` container
(what a pushed run's ``job_*`` columns hold) and the rollups, builds the app in this process and
renders each page ``--requests`` times through Flask's test client: the time is
the server's (routing, the store's queries, the template), without a socket.
Prints p50/p99 per page.  The file is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from query_api import seed  # noqa: E402

from resmon.server import create_app  # noqa: E402
from resmon.server.config import ServerConfig  # noqa: E402
from resmon.store import rollup_pass  # noqa: E402
from resmon.store.db import open_database  # noqa: E402

TOKEN = "bench-read-token"
JOB_FIGURES = """
UPDATE runs SET
  job_cpu_cores_p95 = (SELECT cpu_cores_p95 FROM run_containers c WHERE c.run_id = runs.id AND c.name = 'runner'),
  job_cpu_cores_peak = (SELECT cpu_cores_peak FROM run_containers c WHERE c.run_id = runs.id AND c.name = 'runner'),
  job_memory_bytes_p95 = (SELECT memory_bytes_p95 FROM run_containers c WHERE c.run_id = runs.id AND c.name = 'runner'),
  job_memory_bytes_peak = (SELECT memory_bytes_peak FROM run_containers c WHERE c.run_id = runs.id AND c.name = 'runner'),
  job_limit_cpu_cores = 4.0,
  job_limit_memory_bytes = 4294967296,
  job_cpu_seconds = cpu_seconds,
  job_memory_kind = 'rss'
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="resmon-web-bench-")
    try:
        path = str(Path(tmp) / "metrics.db")
        scopes, seconds = seed(path, args.runs, args.jobs)
        db = open_database(path)
        with db.atomic():
            db.execute_sql(JOB_FIGURES)
        # The runs were inserted behind the store's back: roll them up as a server
        # that had received them would have (the job list and top read the rollups).
        rollup_pass.rebuild()
        db.close()
        print(f"seeded {args.runs} runs of {args.jobs} jobs in {seconds:.1f} s")
        app = create_app(ServerConfig(database=path, read_token=TOKEN))
        client = app.test_client()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        org, repo, workflow, job = scopes[0]
        last = client.get(
            "/api/v1/jobs/" + f"{org}/{repo}/{workflow}/{job}/runs?limit=1", headers=headers
        ).get_json()["runs"][0]["id"]
        pages = {
            "jobs": "/jobs",
            "jobs page 5, by memory": "/jobs?sort=memory&page=5",
            "jobs of one org": f"/jobs?org={org}",
            "job": "/job?"
            + urlencode({"org": org, "repo": repo, "workflow": workflow, "job": job}),
            "run": f"/runs/{last}",
            "live": "/live",
            "usage": "/usage?period=30d",
            "alerts": "/alerts",
        }
        print(f"{'page':<24} {'p50 ms':>8} {'p99 ms':>8}")
        for name, url in pages.items():
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get(url, headers=headers)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{name:<24} {statistics.median(times):8.1f} {p99:8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
