"""The alerts API in process (Flask's test client): reads with the read token, rule
changes with the admin token only, clear 4xx for every bad input, states scoped to
the organisation a read is limited to, and alert events on the event stream."""

from __future__ import annotations

import pytest
import schemathesis
from alert_helpers import run_payload
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from resmon.server import ServerConfig, create_app, read_scope
from resmon.server.alerts_config import AlertsConfig
from resmon.server.openapi import build_openapi
from resmon.store import alert_eval, events
from resmon.tokens import push_token

READ = "read-token-0123456789"
ADMIN = "admin-token-0123456789"
HMAC = "hmac-key-0123456789abc"
RULE = {"name": "mem", "mem_threshold": "90%", "consecutive": 1}


def make_app(tmp_path, admin=ADMIN):
    return create_app(
        ServerConfig(
            database=str(tmp_path / "a.db"),
            read_token=READ,
            hmac_keys=(HMAC,),
            alerts=AlertsConfig(admin_token=admin),
        )
    )


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path).test_client()


def admin(token=ADMIN):
    return {"Authorization": f"Bearer {token}"}


def reader():
    return {"Authorization": f"Bearer {READ}"}


def test_crud_with_the_admin_token(client):
    created = client.post("/api/v1/alerts/rules", json=RULE, headers=admin())
    assert created.status_code == 201, created.json
    rule = created.json
    assert rule["mem_threshold"] == "90%" and rule["source"] == "api"
    url = f"/api/v1/alerts/rules/{rule['id']}"
    assert client.get(url, headers=reader()).json == rule
    assert client.get("/api/v1/alerts/rules", headers=reader()).json == {"rules": [rule]}
    changed = client.patch(url, json={"enabled": False, "cpu_threshold": "2"}, headers=admin())
    assert changed.status_code == 200 and changed.json["enabled"] is False
    assert changed.json["cpu_threshold"] == "2 cores"
    assert client.post("/api/v1/alerts/rules", json=RULE, headers=admin()).status_code == 409
    assert client.delete(url, headers=admin()).status_code == 204
    assert client.get(url, headers=reader()).status_code == 404
    assert client.delete(url, headers=admin()).status_code == 404


def test_writes_need_the_admin_token_and_reads_the_read_token(client, tmp_path):
    assert client.post("/api/v1/alerts/rules", json=RULE, headers=reader()).status_code == 401
    assert client.post("/api/v1/alerts/rules", json=RULE).status_code == 401
    assert client.get("/api/v1/alerts/rules", headers=admin()).status_code == 401
    assert client.get("/api/v1/alerts/states").status_code == 401
    (tmp_path / "closed").mkdir()
    closed = make_app(tmp_path / "closed", admin="").test_client()
    refused = closed.post("/api/v1/alerts/rules", json=RULE, headers=admin())
    assert refused.status_code == 403
    assert "--admin-token-file or RESMON_ADMIN_TOKEN" in refused.json["error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{", 400, None),
        (b"[]", 422, None),
        (b'{"name": "x"}', 422, "cpu_threshold"),
        (b'{"name": "x", "mem_threshold": "lots"}', 422, "mem_threshold"),
        (b'{"name": "x", "mem_threshold": "90%", "consecutive": 1e9}', 422, "consecutive"),
        (b'{"name": "x", "mem_threshold": "90%", "oops": 1}', 422, "oops"),
        (b'{"name": "x", "mem_threshold": "90%", "job": "\\u0000"}', 422, "job"),
        (b'{"name": "' + b"n" * 300 + b'", "mem_threshold": "90%"}', 422, "name"),
    ],
)
def test_bad_rules_are_4xx_with_clear_messages(client, body, status, field):
    answer = client.post(
        "/api/v1/alerts/rules",
        data=body,
        headers={**admin(), "Content-Type": "application/json"},
    )
    assert answer.status_code == status, answer.json
    assert answer.json["error"]
    assert answer.json.get("field") == field


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/alerts/rules/abc",
        "/api/v1/alerts/rules/%C2%B3",
        "/api/v1/alerts/rules/99999999999999999999999",
        "/api/v1/alerts/states?state=bad",
        "/api/v1/alerts/states?alerting=maybe",
        "/api/v1/alerts/states?limit=0",
        "/api/v1/alerts/states?rule_id=x",
        "/api/v1/alerts/states?organization=%00",
    ],
)
def test_bad_reads_are_4xx(client, path):
    answer = client.get(path, headers=reader())
    assert 400 <= answer.status_code < 500 and answer.json["error"]


def _alerting_runs(client, orgs):
    """Rule, cursor, then one breaching run per organisation, evaluated."""
    client.post("/api/v1/alerts/rules", json=RULE, headers=admin())
    alert_eval.start_cursor()
    for i, org in enumerate(orgs, 1):
        payload = run_payload(str(i), 0.95, organization=org, repository=f"{org}/r")
        e = payload["execution"]
        token = push_token(HMAC, e["organization"], e["repository"], e["workflow"], e["job"])
        answer = client.post(
            "/api/v1/metrics", json=payload, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 201, answer.json
    alert_eval.step(lambda cursor: events.events_after(cursor, 100))


def test_states_are_limited_to_the_organisation_of_the_read(client, monkeypatch):
    _alerting_runs(client, ["a", "b"])
    states = client.get("/api/v1/alerts/states", headers=reader()).json["states"]
    assert sorted((s["organization"], s["state"]) for s in states) == [
        ("a", "mem_alert"),
        ("b", "mem_alert"),
    ]
    monkeypatch.setattr(read_scope, "read_org", lambda: "a")
    states = client.get("/api/v1/alerts/states", headers=reader()).json["states"]
    assert [s["organization"] for s in states] == ["a"]
    other = client.get("/api/v1/alerts/states?organization=b", headers=reader()).json
    assert other == {"states": []}
    assert client.get("/api/v1/alerts/states?alerting=true", headers=reader()).json["states"]


def test_alert_events_are_on_the_event_stream(client):
    _alerting_runs(client, ["a"])
    answer = client.get("/api/v1/events?last_event_id=0&kinds=alert", headers=reader())
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert text.count("event: alert\n") == 1 and '"state":"mem_alert"' in text


# --- fuzzing the alert operations with the admin token configured --------------------

schema = schemathesis.openapi.from_dict(build_openapi()).include(path_regex="^/api/v1/alerts")


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = make_app(tmp_path_factory.mktemp("alerts-fuzz"))
    app.test_client().post("/api/v1/alerts/rules", json=RULE, headers=admin())
    return app


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_alert_operations(case, fuzz_app):
    token = ADMIN if case.method.upper() in ("POST", "PATCH", "DELETE") else READ
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    case.call_and_validate(app=fuzz_app, headers=admin(token), checks=checks)
