"""Login, the access token, refresh rotation with reuse detection, and logout."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from support import Accounts, Api, b64url_decode, expect, jwt_parts, unique_email


def me(api: Api, token: str):
    return api.get("/v1/me", token=token)


def refresh(api: Api, token: str):
    return api.post("/v1/auth/refresh", {"refresh_token": token})


def test_login_answers_a_token_pair_with_a_verifiable_access_token(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    pair = account.tokens
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900, "access tokens live 15 minutes"
    assert pair["refresh_expires_in"] > pair["expires_in"]
    assert pair["access_token"] != pair["refresh_token"]

    header, claims, signature = jwt_parts(pair["access_token"])
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt", header
    keys = expect(api, api.get("/.well-known/jwks.json"), 200)["keys"]
    [key] = [k for k in keys if k["kid"] == header["kid"]]
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"]))
    signing_input = pair["access_token"].rsplit(".", 1)[0].encode()
    public.verify(signature, signing_input)  # raises when the JWKS key did not sign it

    for claim in ("iss", "aud", "sub", "sid", "jti", "iat", "exp"):
        assert claim in claims, f"missing claim {claim}: {claims}"
    assert claims["sub"] == account.id
    assert claims["exp"] - claims["iat"] == pair["expires_in"]
    assert abs(claims["iat"] - time.time()) < 120, "iat is unix seconds, now"

    second = accounts.login(account)
    _, claims2, _ = jwt_parts(second["access_token"])
    assert claims2["jti"] != claims["jti"] and claims2["sid"] != claims["sid"]
    expect(api, me(api, pair["access_token"]), 200)
    expect(api, me(api, second["access_token"]), 200)


def test_unknown_email_and_wrong_password_answer_the_same(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api, login=False)
    wrong = api.post("/v1/auth/login", {"email": account.email, "password": "Wrong9Password"})
    unknown = api.post("/v1/auth/login", {"email": unique_email(), "password": "Wrong9Password"})
    expect(api, wrong, 401, "invalid_credentials")
    expect(api, unknown, 401, "invalid_credentials")
    assert wrong.content == unknown.content


def test_me_needs_a_bearer_token(api: Api, accounts: Accounts) -> None:
    expect(api, api.get("/v1/me"), 401, "unauthorized")
    expect(api, me(api, "not-a-token"), 401, "invalid_token")


def test_refresh_rotates_the_pair(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    first = account.tokens
    second = expect(api, refresh(api, first["refresh_token"]), 200)
    assert second["token_type"] == "Bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    _, old_claims, _ = jwt_parts(first["access_token"])
    _, new_claims, _ = jwt_parts(second["access_token"])
    assert new_claims["sid"] == old_claims["sid"], "a refresh stays in its session"
    assert new_claims["sub"] == account.id

    third = expect(api, refresh(api, second["refresh_token"]), 200)
    expect(api, me(api, third["access_token"]), 200)


def test_refresh_token_reuse_revokes_the_session(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    bystander = dict(account.tokens)  # another session of the same account
    attacked = accounts.login(account)
    stolen = attacked["refresh_token"]
    second = expect(api, refresh(api, stolen), 200)
    third = expect(api, refresh(api, second["refresh_token"]), 200)

    expect(api, refresh(api, stolen), 401, "invalid_token")
    expect(api, refresh(api, third["refresh_token"]), 401, "invalid_token")
    expect(api, me(api, third["access_token"]), 401, "invalid_token")
    expect(api, me(api, second["access_token"]), 401, "invalid_token")

    expect(api, me(api, bystander["access_token"]), 200)
    expect(api, refresh(api, bystander["refresh_token"]), 200)


def test_refresh_refuses_other_tokens(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    expect(api, refresh(api, account.access), 401, "invalid_token")
    expect(api, refresh(api, "garbage"), 401, "invalid_token")
    expect(api, refresh(api, ""), 401, "invalid_token")
    expect(api, refresh(api, account.refresh + "x"), 401, "invalid_token")
    expect(api, refresh(api, account.refresh), 200)


def test_logout_ends_only_the_calling_session(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    other = dict(account.tokens)
    ending = accounts.login(account)

    response = api.post("/v1/auth/logout", token=ending["access_token"])
    expect(api, response, 204)
    assert response.content == b""
    expect(api, me(api, ending["access_token"]), 401, "invalid_token")
    expect(api, refresh(api, ending["refresh_token"]), 401, "invalid_token")
    expect(api, api.post("/v1/auth/logout", token=ending["access_token"]), 401, "invalid_token")

    expect(api, me(api, other["access_token"]), 200)
    expect(api, refresh(api, other["refresh_token"]), 200)


def test_logout_needs_a_token(api: Api) -> None:
    expect(api, api.post("/v1/auth/logout"), 401, "unauthorized")
