"""Forged and damaged access tokens are refused with 401 invalid_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from support import Accounts, Account, Api, b64url, b64url_decode, expect, jwt_encode, jwt_parts


def public_key_forms(api: Api, kid: str) -> dict[str, bytes]:
    keys = expect(api, api.get("/.well-known/jwks.json"), 200)["keys"]
    [jwk] = [k for k in keys if k["kid"] == kid]
    raw = b64url_decode(jwk["x"])
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "raw": raw,
        "x": jwk["x"].encode(),
        "pem": pem,
        "jwk": json.dumps(jwk).encode(),
        "base64": base64.b64encode(raw),
    }


def hs256(key: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


def alg_none(api: Api, token: str, other: Account) -> list[str]:
    header, claims, _ = jwt_parts(token)
    forged = []
    for alg in ("none", "None", "NONE"):
        forged.append(jwt_encode({**header, "alg": alg}, claims, None))
    signed = token.split(".")[2]
    forged.append(jwt_encode({**header, "alg": "none"}, claims, None) + signed)
    forged.append(jwt_encode({k: v for k, v in header.items() if k != "alg"}, claims, None))
    return forged


def hs256_with_public_key(api: Api, token: str, other: Account) -> list[str]:
    header, claims, _ = jwt_parts(token)
    forms = public_key_forms(api, header["kid"])
    return [jwt_encode({**header, "alg": "HS256"}, claims, hs256(key)) for key in forms.values()]


def edited_payload(api: Api, token: str, other: Account) -> list[str]:
    head, _, signature = token.split(".")
    _, claims, _ = jwt_parts(token)
    edits = [
        {**claims, "sub": other.id},
        {**claims, "exp": claims["exp"] + 3600},
        {**claims, "aud": "someone-else"},
        {**claims, "admin": True},
    ]
    forged = []
    for edit in edits:
        body = b64url(json.dumps(edit, separators=(",", ":")).encode())
        forged.append(f"{head}.{body}.{signature}")
    return forged


def wrong_kid(api: Api, token: str, other: Account) -> list[str]:
    _, body, signature = token.split(".")
    header, _, _ = jwt_parts(token)
    forged = []
    for kid in ("not-a-key", "", "../../etc/passwd", None):
        head = {**header, "kid": kid} if kid is not None else {k: v for k, v in header.items() if k != "kid"}
        forged.append(f"{b64url(json.dumps(head).encode())}.{body}.{signature}")
    return forged


def truncated_signature(api: Api, token: str, other: Account) -> list[str]:
    head, body, signature = token.split(".")
    return [f"{head}.{body}.{signature[:-4]}", f"{head}.{body}.{signature[:-1]}", f"{head}.{body}.", f"{head}.{body}"]


def other_key(api: Api, token: str, other: Account) -> list[str]:
    header, claims, _ = jwt_parts(token)
    key = Ed25519PrivateKey.generate()
    return [jwt_encode(header, claims, key.sign), jwt_encode({**header, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.public_key().public_bytes_raw())}}, claims, key.sign)]


def flipped_signature_bit(api: Api, token: str, other: Account) -> list[str]:
    head, body, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[10] ^= 0x01
    return [f"{head}.{body}.{b64url(bytes(raw))}"]


def malformed(api: Api, token: str, other: Account) -> list[str]:
    return [token + ".extra", "a.b.c", "....", token.replace(".", "", 1), token + "="]


def other_account_tokens(api: Api, token: str, other: Account) -> list[str]:
    # The other account's refresh token is not an access token.
    return [other.refresh]


FORGERIES = [
    alg_none,
    hs256_with_public_key,
    edited_payload,
    wrong_kid,
    truncated_signature,
    other_key,
    flipped_signature_bit,
    malformed,
    other_account_tokens,
]


@pytest.mark.parametrize("forge", FORGERIES, ids=[f.__name__ for f in FORGERIES])
def test_forged_access_token_is_refused(api: Api, accounts: Accounts, forge) -> None:
    account = accounts.create(api)
    other = accounts.create(api)
    for token in forge(api, account.access, other):
        for call in (
            lambda: api.get("/v1/me", token=token),
            lambda: api.get("/v1/me/audit", token=token),
        ):
            response = call()
            assert response.status_code == 401, f"forged token {token[:60]}… accepted: {response.status_code}"
            expect(api, response, 401, "invalid_token")
    # The genuine token still works, so the refusals came from the forgery.
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["id"] == account.id


def test_token_is_refused_after_its_session_ends_even_before_exp(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    _, claims, _ = jwt_parts(account.access)
    assert claims["exp"] > time.time() + 60
    expect(api, api.post("/v1/auth/logout", token=account.access), 204)
    expect(api, api.get("/v1/me", token=account.access), 401, "invalid_token")
