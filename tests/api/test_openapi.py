"""The committed OpenAPI document is generated from the code, and the answers match it."""

from __future__ import annotations

import json

from crm_bridge.api.redirects import QUERY_TAGS, SESSION_QUERY
from infra.openapi import DOCUMENT, generate


def test_the_committed_openapi_document_is_current() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == generate(), "stale: run .venv/bin/python -m infra.openapi"


def test_every_route_documents_its_answers() -> None:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    operations = {
        (method.upper(), path): spec for path, methods in document["paths"].items() for method, spec in methods.items()
    }
    assert set(operations) == {
        ("POST", "/api/v1/applications"),
        ("POST", "/api/v1/messenger-events"),
        ("GET", "/go/{channel}"),
        ("GET", "/api/v1/crm/test"),
        ("GET", "/api/v1/crm/test/details"),
    }
    applications = operations[("POST", "/api/v1/applications")]["responses"]
    assert {"201", "202", "400", "413", "415", "422", "503"} <= set(applications)
    assert applications["422"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"
    assert "phone" in document["components"]["schemas"]["Application"]["properties"]


def test_the_redirect_is_documented_with_the_parameters_its_handler_reads() -> None:
    """The redirect answers without a resolver; its route is declared for the document alone, so
    the two lists of query parameters must not drift apart."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    go = document["paths"]["/go/{channel}"]["get"]
    documented = {parameter["name"] for parameter in go["parameters"] if parameter["in"] == "query"}

    assert documented == {*QUERY_TAGS, SESSION_QUERY}
    assert set(go["responses"]) == {"302", "404", "500"}, "the redirect refuses nothing but an unknown channel"
