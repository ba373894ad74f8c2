"""Health, token keys, and what unknown paths and methods answer."""

from __future__ import annotations

import pytest

from support import Accounts, Api, Outbox, STRONG_PASSWORD, b64url_decode, expect, unique_email


def test_healthz(api: Api) -> None:
    assert expect(api, api.get("/healthz"), 200) == {"status": "ok"}


def test_jwks_shape(api: Api) -> None:
    response = api.get("/.well-known/jwks.json")
    body = expect(api, response, 200)
    assert response.headers["content-type"].startswith("application/json")
    keys = body["keys"]
    assert keys, "no keys"
    kids = [key["kid"] for key in keys]
    assert len(set(kids)) == len(kids), f"duplicate kid: {kids}"
    for key in keys:
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519", key
        assert key["alg"] == "EdDSA" and key["use"] == "sig", key
        assert len(b64url_decode(key["x"])) == 32, key
        assert "=" not in key["x"], "base64url must be unpadded"
        private = {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)
        assert not private, f"private key material published: {private}"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v1/nope"),
        ("POST", "/v1/accounts/nope"),
        ("GET", "/v1/me/nope"),
        ("GET", "/V1/ME"),
        ("GET", "/.well-known/nope.json"),
    ],
)
def test_unknown_path_is_404(api: Api, method: str, path: str) -> None:
    expect(api, api.request(method, path), 404, "not_found")


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("GET", "/v1/accounts", {"POST"}),
        ("PUT", "/v1/accounts", {"POST"}),
        ("GET", "/v1/auth/login", {"POST"}),
        ("DELETE", "/v1/auth/refresh", {"POST"}),
        ("POST", "/healthz", {"GET"}),
        ("DELETE", "/openapi.json", {"GET"}),
        ("POST", "/.well-known/jwks.json", {"GET"}),
        ("PATCH", "/v1/me", {"GET"}),
        ("GET", "/v1/me/totp", {"POST", "DELETE"}),
        ("PUT", "/v1/me/password", {"POST"}),
        ("POST", "/v1/me/audit", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(api: Api, method: str, path: str, allowed: set[str]) -> None:
    response = api.request(method, path)
    expect(api, response, 405, "method_not_allowed")
    listed = {m.strip().upper() for m in response.headers.get("allow", "").split(",") if m.strip()}
    assert allowed <= listed, f"Allow should list {allowed}, got {response.headers.get('allow')!r}"


def test_wrong_method_with_a_valid_body_changes_nothing(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    body = {"email": email, "password": STRONG_PASSWORD, "activation_channel": "email"}
    expect(api, api.request("PUT", "/v1/accounts", json_body=body), 405, "method_not_allowed")
    expect(api, api.post("/v1/account", body), 404, "not_found")
    assert outbox.settle(email) == 0
    login = api.post("/v1/auth/login", {"email": email, "password": STRONG_PASSWORD})
    expect(api, login, 401, "invalid_credentials")


def test_json_content_type_with_charset_is_accepted(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    email = unique_email()
    body = f'{{"email":"{email}","password":"{STRONG_PASSWORD}","activation_channel":"email"}}'
    response = api.request(
        "POST",
        "/v1/accounts",
        content=body.encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert expect(api, response, 202) == {"status": "pending_activation"}
    outbox.wait(email, "activation")
