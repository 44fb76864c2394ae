"""The OpenAPI document stays true: every served route and method is documented,
and everything documented is served."""

from __future__ import annotations

import re

import pytest

from resmon.server import ServerConfig, create_app, state

IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def app(tmp_path):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token="r", hmac_keys=("k",))
    )
    yield app
    state(app).database.close()


def flask_rule_of(path: str, item: dict) -> str:
    """The Flask rule a documented path is served by."""
    return item.get("x-flask-rule") or re.sub(r"\{(\w+)\}", r"<\1>", path)


def normalise(rule: str) -> str:
    # <int:id> and <id> are the same route for this purpose.
    return re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule)


def served(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - IMPLICIT_METHODS:
            out.add((normalise(rule.rule), method.lower()))
    return out


def documented(doc: dict) -> set[tuple[str, str]]:
    out = set()
    for path, item in doc["paths"].items():
        for method in set(item) & HTTP_METHODS:
            out.add((normalise(flask_rule_of(path, item)), method))
    return out


def test_every_route_is_documented_and_every_documented_route_is_served(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert served(app) - documented(doc) == set(), "served but not in the OpenAPI document"
    assert documented(doc) - served(app) == set(), "documented but not served"


def test_every_reference_resolves_and_every_operation_has_an_id(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    text = str(doc)
    for ref in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert ref in doc["components"]["schemas"], ref
    ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for m, op in item.items()
        if m in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids))


def test_documented_status_codes_match_what_the_push_route_answers(app):
    """Spot check that the document is about this API: the push operation lists
    every status the push route can produce."""
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    push = doc["paths"]["/api/v1/metrics"]["post"]["responses"]
    assert {"200", "201", "400", "401", "413", "422", "503"} <= set(push)


def test_document_is_valid_openapi(app):
    """Validated by schemathesis' loader (it rejects a malformed document)."""
    import schemathesis

    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    loaded = schemathesis.openapi.from_dict(doc)
    operations = [op for op in loaded.get_all_operations()]
    assert len(operations) == len(documented(doc))
