"""The OpenAPI document: valid 3.1, describes exactly the contract, and is what the server serves."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from support import OPENAPI_PATH, Api, Contract, expect

CONTRACT_OPERATIONS = {
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/v1/accounts"),
    ("post", "/v1/accounts/activate"),
    ("post", "/v1/accounts/activate/resend"),
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/mfa"),
    ("post", "/v1/auth/refresh"),
    ("post", "/v1/auth/logout"),
    ("get", "/v1/me"),
    ("post", "/v1/me/totp"),
    ("delete", "/v1/me/totp"),
    ("post", "/v1/me/totp/confirm"),
    ("post", "/v1/me/password"),
    ("get", "/v1/me/audit"),
    ("post", "/v1/password-reset"),
    ("post", "/v1/password-reset/confirm"),
}
BEARER_OPERATIONS = {
    ("post", "/v1/auth/logout"),
    ("get", "/v1/me"),
    ("post", "/v1/me/totp"),
    ("delete", "/v1/me/totp"),
    ("post", "/v1/me/totp/confirm"),
    ("post", "/v1/me/password"),
    ("get", "/v1/me/audit"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_document_is_valid_openapi_3_1(contract: Contract) -> None:
    assert contract.doc["openapi"].startswith("3.1.")
    validate(contract.doc, cls=OpenAPIV31SpecValidator)


ACCOUNT_PREFIXES = ("/healthz", "/openapi.json", "/.well-known/", "/v1/accounts", "/v1/auth/", "/v1/me", "/v1/password-reset")


def test_document_describes_exactly_the_contract_operations(contract: Contract) -> None:
    # Other parts of the API (rooms, ...) may be documented too; the accounts part is exact.
    documented = {(m, p) for m, p in operations(contract.doc) if p.startswith(ACCOUNT_PREFIXES)}
    assert documented == CONTRACT_OPERATIONS


def test_request_bodies_are_json_and_closed(contract: Contract) -> None:
    for key, op in operations(contract.doc).items():
        if "requestBody" not in op:
            continue
        content = op["requestBody"]["content"]
        assert list(content) == ["application/json"], key
        schema, _ = contract.deref(content["application/json"]["schema"])
        branches = schema.get("oneOf", [schema])
        for branch in branches:
            branch, _ = contract.deref(branch)
            assert branch.get("additionalProperties") is False, f"{key} accepts unknown fields"
            assert set(branch["required"]) <= set(branch["properties"]), key


def test_bearer_scheme_guards_exactly_the_authenticated_routes(contract: Contract) -> None:
    scheme = contract.doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for key, op in operations(contract.doc).items():
        if key not in CONTRACT_OPERATIONS:
            continue
        names = {name for requirement in op.get("security", contract.doc.get("security", [])) for name in requirement}
        assert names == ({"bearerAuth"} if key in BEARER_OPERATIONS else set()), key
        if key in BEARER_OPERATIONS:
            assert "401" in op["responses"], key


def test_every_error_answer_has_the_error_shape(contract: Contract) -> None:
    for key, op in operations(contract.doc).items():
        for status, response in op["responses"].items():
            if status != "default" and int(status) < 400:
                continue
            response, _ = contract.deref(response)
            schema = response["content"]["application/json"]["schema"]
            text = json.dumps(schema)
            assert "#/components/schemas/Error" in text, (key, status)


def test_every_429_carries_retry_after(contract: Contract) -> None:
    seen = 0
    for key, op in operations(contract.doc).items():
        response = op["responses"].get("429")
        if response is None:
            continue
        seen += 1
        response, _ = contract.deref(response)
        header, _ = contract.deref(response["headers"]["Retry-After"])
        assert header["required"] is True, key
        assert header["schema"]["type"] == "integer", key
    assert seen >= 5
    assert "429" in operations(contract.doc)[("post", "/v1/auth/login")]["responses"]


def test_server_serves_this_document(api: Api) -> None:
    response = api.get("/openapi.json")
    expect(api, response, 200)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("method,path", sorted(CONTRACT_OPERATIONS))
def test_every_documented_route_exists(api: Api, method: str, path: str) -> None:
    # Without a token or a body no route may answer 404 or 405; what it does answer must be
    # documented for it.
    response = api.request(method.upper(), path)
    assert response.status_code not in (404, 405), f"{method.upper()} {path} -> {response.status_code}"
    expect(api, response, response.status_code)
