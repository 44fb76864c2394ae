"""Org-scoped read tokens on a real ``resmon serve``: a token of one organisation gets
its own jobs and runs from every read endpoint and nothing of another's (a path
naming another organisation is a 404 as for one never stored, a list is filtered);
push tokens, expired tokens and tokens of another key are refused."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from events_client import EventStream
from live_helpers import batch_body, new_run_key, sample
from query_data import MiB, now_utc, push_body, run_summary
from server_proc import ServerProcess

from resmon.tokens import push_token, read_token

ORGS = ("acme", "globex")
USUAL_MEMORY = [900, 920, 880, 940, 910, 930, 890, 960, 905]


def job_path(org: str, job: str = "build") -> str:
    return f"/api/v1/jobs/{org}/{org}%2Fwidgets/ci.yml/{job}"


def go_path(org: str) -> str:
    return f"/api/v1/metrics/repo/{org}/{org}%2Fwidgets/ci.yml/build"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server, two organisations with the same jobs: nine ordinary runs and one
    that regresses each, and a live run each (on hosts named after them)."""
    directory = tmp_path_factory.mktemp("scope")
    rules = directory / "alerts.toml"
    # The builder's memory against its 1 GiB limit: every run is over 80 %.
    rules.write_text('[[rule]]\nname = "memory"\nmem_threshold = "80%"\nconsecutive = 1\n')
    args = (f"--alert-rules={rules}", "--alert-poll-interval=50ms")
    with ServerProcess(directory / "m.db", extra_args=args) as server:
        ids: dict[str, list[int]] = {}
        live: dict[str, int] = {}
        for org in ORGS:
            ids[org] = []
            memories = [*USUAL_MEMORY, 1800]
            for n, mib in enumerate(memories):
                start = now_utc() - timedelta(days=len(memories) - n, hours=1)
                body = push_body(
                    f"r{n}",
                    run_summary(start=start, builder_mem=mib * MiB),
                    org=org,
                    repo=f"{org}/widgets",
                )
                r = server.push(body)
                assert r.status_code == 201, r.text
                ids[org].append(r.json()["id"])
            execution = {
                "organization": org,
                "repository": f"{org}/widgets",
                "workflow": "ci.yml",
                "job": "live",
                "run_id": "77",
                "run_attempt": "1",
            }
            body = batch_body(
                new_run_key(), 0, [sample(0), sample(1)], execution=execution, host=f"host-{org}"
            )
            token = push_token(server.hmac_key, org, f"{org}/widgets", "ci.yml", "live")
            r = requests.post(
                server.url + "/api/v1/metrics/live",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert r.status_code == 201, r.text
            live[org] = r.json()["run"]
        server.ids = ids
        server.live = live
        yield server
    assert server.returncode == 0, server.stderr_text()[-2000:]


def org_token(server, org: str = "acme", **kw) -> str:
    return read_token(server.hmac_key, org, expires=kw.get("expires", int(time.time()) + 3600))


def get(server, path: str, token: str, **params) -> requests.Response:
    return requests.get(
        server.url + path,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def orgs_of(rows) -> set[str]:
    return {row["organization"] for row in rows}


LISTS = [
    ("/api/v1/jobs", {}, "jobs"),
    ("/api/v1/top", {"period": "30d"}, "jobs"),
    ("/api/v1/recommendations", {}, "jobs"),
    ("/api/v1/regressions", {"since": "30d"}, "runs"),
    ("/api/v1/live", {}, "runs"),
]


@pytest.mark.parametrize("path, params, key", LISTS)
def test_lists_hold_only_the_organisation(served, path, params, key):
    everything = get(served, path, served.read_token, **params)
    assert everything.status_code == 200, everything.text
    assert orgs_of(everything.json()[key]) == set(ORGS)  # both are there to be hidden
    for org in ORGS:
        scoped = get(served, path, org_token(served, org), **params)
        assert scoped.status_code == 200, scoped.text
        assert orgs_of(scoped.json()[key]) == {org}
        assert "globex" not in scoped.text if org == "acme" else "acme" not in scoped.text


def test_a_filter_naming_another_organisation_is_an_empty_list(served):
    token = org_token(served)
    assert get(served, "/api/v1/jobs", token, organization="globex").json()["jobs"] == []
    assert get(served, "/api/v1/jobs", token, organization="acme").json()["jobs"]
    assert get(served, "/api/v1/jobs", token, repository="globex/widgets").json()["jobs"] == []
    live = get(served, "/api/v1/live", token, organization="globex").json()
    assert live == {"runs": [], "hosts": []}


def test_live_hosts_are_the_organisations_own(served):
    hosts = {h["host"] for h in get(served, "/api/v1/live", org_token(served)).json()["hosts"]}
    assert hosts == {"host-acme"}


JOB_PATHS = ["/runs", "/trend", "/recommendation"]


@pytest.mark.parametrize("suffix", JOB_PATHS)
def test_a_job_of_another_organisation_is_a_404_like_one_never_stored(served, suffix):
    token = org_token(served)
    own = get(served, job_path("acme") + suffix, token)
    assert own.status_code == 200, own.text
    other = get(served, job_path("globex") + suffix, token)
    assert other.status_code == 404
    # The answer of a job that does not exist, with no other organisation's names.
    assert (
        other.json()["error"]
        == "no runs stored for job 'build' of workflow 'ci.yml' in globex/widgets"
    )
    assert all("globex" not in s for s in other.json()["suggestions"])
    # Unscoped, the same path answers.
    assert get(served, job_path("globex") + suffix, served.read_token).status_code == 200


def test_suggestions_name_only_the_organisations_jobs(served):
    answer = get(served, job_path("acme", "buidl") + "/runs", org_token(served)).json()
    assert answer["suggestions"] and all(s.startswith("acme ") for s in answer["suggestions"])
    unscoped = get(served, job_path("acme", "buidl") + "/runs", served.read_token).json()
    assert any(s.startswith("globex ") for s in unscoped["suggestions"])


def test_a_run_of_another_organisation_is_a_404_like_one_never_stored(served):
    token = org_token(served)
    mine, theirs = served.ids["acme"][0], served.ids["globex"][0]
    assert get(served, f"/api/v1/runs/{mine}", token).status_code == 200
    other = get(served, f"/api/v1/runs/{theirs}", token)
    missing = get(served, "/api/v1/runs/999999", token)
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"] == f"no run with id {theirs}"
    assert get(served, f"/api/v1/runs/{theirs}", served.read_token).status_code == 200


def test_samples_of_another_organisations_run_are_a_404(served):
    token = org_token(served)
    assert get(served, f"/api/v1/runs/{served.live['acme']}/samples", token).status_code == 200
    other = get(served, f"/api/v1/runs/{served.live['globex']}/samples", token)
    assert other.status_code == 404
    assert other.json() == {"error": f"no run with id {served.live['globex']}"}


def test_the_go_query_of_another_organisation_is_a_404(served):
    token = org_token(served)
    own = get(served, go_path("acme"), token)
    assert own.status_code == 200 and orgs_of(own.json()) == {"acme"}
    assert get(served, go_path("globex"), token).status_code == 404
    assert len(get(served, go_path("globex"), served.read_token).json()) == 10


def test_events_are_the_organisations_only(served):
    params = {"last_event_id": "0", "timeout_seconds": "2"}
    everything = _events(served, served.read_token, params)
    assert {e["data"]["organization"] for e in everything} == set(ORGS)
    mine = _events(served, org_token(served), params)
    assert mine and {e["data"]["organization"] for e in mine} == {"acme"}
    asked_other = _events(served, org_token(served), {**params, "organization": "globex"})
    assert asked_other == []


def _events(server, token: str, params: dict) -> list[dict]:
    with EventStream(server.url, {"Authorization": f"Bearer {token}"}, params) as stream:
        assert stream.status == 200
        assert stream.ended.wait(15), "the stream did not end at timeout_seconds"
        events = []
        while not stream.events.empty():
            events.append(stream.events.get_nowait())
        return events


def test_server_wide_things_need_the_servers_token(served):
    token = org_token(served)
    metrics = get(served, "/metrics", token)
    assert metrics.status_code == 403
    assert "resmon_" not in metrics.text
    assert get(served, "/metrics", served.read_token).status_code == 200
    mint = requests.post(
        served.url + "/api/v1/token",
        json={"kind": "read", "organization": "globex"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert mint.status_code == 403
    assert "globex" not in mint.text


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda s: push_token(s.hmac_key, "acme", "acme/widgets", "ci.yml", "build"),
            id="push-v1",
        ),
        pytest.param(
            lambda s: push_token(
                s.hmac_key,
                "acme",
                "acme/widgets",
                "ci.yml",
                "build",
                expires=int(time.time()) + 600,
            ),
            id="push-v2",
        ),
        pytest.param(
            lambda s: read_token(s.hmac_key, "acme", expires=int(time.time()) - 1), id="expired"
        ),
        pytest.param(lambda s: read_token("another-key-0123456789", "acme"), id="other-key"),
        pytest.param(lambda s: s.hmac_key, id="hmac-key"),
    ],
)
def test_refused_tokens(served, make):
    token = make(served)
    for path in ("/api/v1/jobs", job_path("acme") + "/runs", go_path("acme"), "/api/v1/live"):
        r = get(served, path, token)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["WWW-Authenticate"] == "Bearer"


def test_a_read_token_never_pushes(served):
    body = push_body("x", run_summary(start=now_utc()), org="acme", repo="acme/widgets")
    r = requests.post(
        served.url + "/api/v1/metrics",
        json=body,
        headers={"Authorization": f"Bearer {org_token(served)}"},
        timeout=10,
    )
    assert r.status_code == 401


def test_the_server_mints_read_tokens(served):
    r = requests.post(
        served.url + "/api/v1/token",
        json={"kind": "read", "organization": "globex", "expires_in": 3600},
        headers=served.read_headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["organization"] == "globex" and body["token"].startswith("r1.")
    assert abs(body["expires_at"] - (time.time() + 3600)) < 60
    jobs = get(served, "/api/v1/jobs", body["token"]).json()["jobs"]
    assert orgs_of(jobs) == {"globex"}
    for bad in ({"kind": "read"}, {"kind": "read", "organization": "a\nb"}, {"kind": "admin"}):
        r = requests.post(
            served.url + "/api/v1/token", json=bad, headers=served.read_headers, timeout=10
        )
        assert r.status_code == 400, bad


def test_alert_states_are_the_organisations_only(served):
    deadline = time.monotonic() + 20
    while True:  # the evaluator runs in the background
        everything = get(served, "/api/v1/alerts/states", served.read_token).json()["states"]
        if orgs_of(everything) == set(ORGS) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert orgs_of(everything) == set(ORGS)
    token = org_token(served)
    assert orgs_of(get(served, "/api/v1/alerts/states", token).json()["states"]) == {"acme"}
    other = get(served, "/api/v1/alerts/states", token, organization="globex")
    assert other.status_code == 200 and other.json()["states"] == []
    assert get(served, "/api/v1/alerts/rules", token).status_code == 200


def test_usage_is_the_organisations_only(served):
    everything = get(served, "/api/v1/usage", served.read_token, by="org").json()
    assert {row["organization"] for row in everything["rows"]} == set(ORGS)
    token = org_token(served)
    mine = get(served, "/api/v1/usage", token, by="org").json()
    assert {row["organization"] for row in mine["rows"]} == {"acme"}
    other = get(served, "/api/v1/usage", token, by="org", organization="globex").json()
    assert other["rows"] == []
