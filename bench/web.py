"""Server time per web page with 100,000 stored runs.

    .venv/bin/python bench/web.py [--runs 100000] [--jobs 200] [--requests 30]

Seeds a temporary SQLite file with bench/query_api.py's ``bulk_seed`` (100,000
runs over 90 days, two containers each, the job figures and the rollups), builds
the app in this process and renders each page once (``first``: the jobs list's
recommendations not kept yet) and then ``--requests`` times through Flask's test
client: the time is the server's (routing, the store's queries, the template),
without a socket.  Prints the first time and p50/p99 per page.  The file is
removed afterwards.
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

from query_api import bulk_seed, jobs  # noqa: E402

from resmon.server import create_app  # noqa: E402
from resmon.server.config import ServerConfig  # noqa: E402

TOKEN = "bench-read-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="resmon-web-bench-")
    try:
        path = str(Path(tmp) / "metrics.db")
        seconds = bulk_seed(path, args.runs, args.jobs)
        scopes = jobs(args.jobs)
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
        print(f"{'page':<24} {'first ms':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for name, url in pages.items():
            t0 = time.perf_counter()
            assert client.get(url, headers=headers).status_code == 200, url
            first = (time.perf_counter() - t0) * 1000
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get(url, headers=headers)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{name:<24} {first:9.1f} {statistics.median(times):8.1f} {p99:8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
