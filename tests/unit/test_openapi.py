"""The published OpenAPI document: valid OpenAPI 3.1, and it describes every endpoint that
discovery names (so a relying service's tooling and our fuzzing see the same surface)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from idp.provider.openapi import JSON_ENDPOINTS, OPERATIONS, openapi_document

ENDPOINT_KEYS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "introspection_endpoint",
    "revocation_endpoint",
    "end_session_endpoint",
)


def _document(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    data: dict[str, Any] = response.get_json()
    return data


def test_the_published_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = _document(client)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_endpoint_in_discovery_is_described(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    document = _document(client)
    assert document["servers"] == [{"url": metadata["issuer"]}]
    for key in ENDPOINT_KEYS:
        assert metadata[key].startswith(metadata["issuer"]), key
        path = urlsplit(metadata[key]).path
        assert path in document["paths"], f"{key} ({path}) is not in /openapi.json"
    for probe in ("/healthz", "/readyz", "/.well-known/openid-configuration"):
        assert probe in document["paths"]


def test_every_documented_path_answers_as_documented(client: FlaskClient) -> None:
    """No path in the document is a 404: the names map to real routes."""
    document = _document(client)
    for path, item in document["paths"].items():
        for method in item:
            response = client.open(path, method=method.upper())
            assert response.status_code != 404, (method, path)
            assert str(response.status_code) in item[method]["responses"], (
                method,
                path,
                response.status_code,
            )


def test_a_broken_document_is_refused_by_the_validator() -> None:
    """The validity test can fail: a response without its description is refused."""
    paths = {name: f"/{i}" for i, name in enumerate(OPERATIONS)}
    document = openapi_document("http://127.0.0.1:8000", paths)
    validate(document)
    del document["paths"]["/0"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_every_operation_documented_as_json_answers_its_errors_in_json() -> None:
    """idp/flows/errors.py answers JSON (not a page) on JSON_ENDPOINTS: that set must hold
    every endpoint the document says speaks JSON, and only those."""
    speaks_json = {
        name
        for name, item in OPERATIONS.items()
        if any(
            "application/json" in response.get("content", {})
            for operation in item.values()
            for response in operation["responses"].values()
        )
    }
    assert speaks_json == JSON_ENDPOINTS


def test_every_documented_cors_preflight_answers_the_documented_headers(
    client: FlaskClient,
) -> None:
    """Browser-based clients' tooling reads the preflights from the document: each one the
    document lists answers 204 with exactly the documented header values."""
    document = _document(client)
    preflights = {p: item["options"] for p, item in document["paths"].items() if "options" in item}
    assert len(preflights) == 5  # discovery, JWKS, token, userinfo, revocation
    for path, operation in preflights.items():
        response = client.open(path, method="OPTIONS", headers={"Origin": "https://spa.example"})
        assert response.status_code == 204, path
        for name, header in operation["responses"]["204"]["headers"].items():
            assert response.headers.get(name) == header["schema"]["const"], (path, name)
