"""TOTP enrolment, confirmation, MFA login, replay refusal, recovery codes and disabling."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

from support import Accounts, Api, Authenticator, b32decode, challenge, enable, enrol, expect, mfa, totp


def test_enrolment_answers_secret_uri_and_qr(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    body = enrol(api, account)

    secret = body["secret"]
    assert len(b32decode(secret)) >= 16, "RFC 4226 asks for at least 128 bits"
    uri = urlsplit(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp"), body["otpauth_uri"]
    assert unquote(uri.path) == f"/Bedside:{account.email}"
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert query["secret"] == secret
    assert query.get("issuer") == "Bedside"
    assert query.get("algorithm", "SHA1").upper() == "SHA1"
    assert query.get("digits", "6") == "6" and query.get("period", "30") == "30"

    svg = body["qr_svg"]
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    prefix = "data:image/svg+xml;base64,"
    assert base64.b64decode(body["qr_data_uri"].removeprefix(prefix)).decode() == svg

    # Nothing changes until the enrolment is confirmed.
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["totp_enabled"] is False
    assert "access_token" in accounts.login(account)


def test_confirm_turns_totp_on_with_ten_recovery_codes(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    secret = enrol(api, account)["secret"]
    app = Authenticator(secret)
    wrong = f"{(int(totp(secret)) + 500_000) % 1_000_000:06d}"
    expect(api, api.post("/v1/me/totp/confirm", {"code": wrong}, token=account.access), 400, "invalid_code")
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["totp_enabled"] is False

    body = expect(api, api.post("/v1/me/totp/confirm", {"code": app.code()}, token=account.access), 200)
    codes = body["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(isinstance(c, str) and len(c) >= 8 for c in codes), codes
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["totp_enabled"] is True
    expect(api, api.post("/v1/me/totp", token=account.access), 409, "totp_already_enabled")
    assert secret not in api.get("/v1/me", token=account.access).text


def test_confirm_without_enrolment_is_409(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    expect(api, api.post("/v1/me/totp/confirm", {"code": "123456"}, token=account.access), 409, "totp_not_pending")


def test_mfa_login_and_replay_refusal(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    app, _ = enable(api, account)

    token = challenge(api, account)
    code = app.code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    expect(api, mfa(api, token, code=wrong), 401, "invalid_code")

    token = challenge(api, account)
    pair = expect(api, mfa(api, token, code=code), 200)
    assert pair["token_type"] == "Bearer"
    me = expect(api, api.get("/v1/me", token=pair["access_token"]), 200)
    assert me["id"] == account.id and me["totp_enabled"] is True

    replay = challenge(api, account)
    expect(api, mfa(api, replay, code=code), 401, "invalid_code")


def test_mfa_token_must_be_genuine(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    app, _ = enable(api, account)
    code = app.code()
    expect(api, mfa(api, "garbage", code=code), 401, "invalid_token")
    expect(api, mfa(api, account.access, code=code), 401, "invalid_token")
    expect(api, mfa(api, account.refresh, code=code), 401, "invalid_token")
    expect(api, mfa(api, challenge(api, account), code=code), 200)


def test_recovery_code_works_once(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    _, recovery = enable(api, account)

    pair = expect(api, mfa(api, challenge(api, account), recovery_code=recovery[0]), 200)
    expect(api, api.get("/v1/me", token=pair["access_token"]), 200)
    expect(api, mfa(api, challenge(api, account), recovery_code=recovery[0]), 401, "invalid_code")
    expect(api, mfa(api, challenge(api, account), recovery_code=recovery[1]), 200)


def test_disable_needs_password_and_code(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    app, recovery = enable(api, account)
    code = app.code()

    def disable(password: str, code: str):
        return api.delete("/v1/me/totp", {"password": password, "code": code}, token=account.access)

    expect(api, disable("Wrong9Password", recovery[0]), 401, "invalid_credentials")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    expect(api, disable(account.password, wrong), 401, "invalid_code")
    assert expect(api, api.get("/v1/me", token=account.access), 200)["totp_enabled"] is True

    response = disable(account.password, code)
    expect(api, response, 204)
    assert response.content == b""
    assert expect(api, api.get("/v1/me", token=account.access), 200)["totp_enabled"] is False
    assert "access_token" in accounts.login(account), "login no longer asks for a code"


def test_disable_with_a_recovery_code(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    _, recovery = enable(api, account)
    response = api.delete("/v1/me/totp", {"password": account.password, "code": recovery[3]}, token=account.access)
    expect(api, response, 204)
    assert expect(api, api.get("/v1/me", token=account.access), 200)["totp_enabled"] is False
    # A fresh enrolment starts over with a new secret.
    assert "secret" in enrol(api, account)


def test_mfa_token_is_single_use(api: Api, accounts: Accounts) -> None:
    # One password check buys one session: a spent challenge is a bad mfa_token.
    account = accounts.create(api)
    _, recovery = enable(api, account)
    token = challenge(api, account)
    expect(api, mfa(api, token, recovery_code=recovery[0]), 200)
    expect(api, mfa(api, token, recovery_code=recovery[1]), 401, "invalid_token")
    # The refused attempt did not spend the recovery code.
    expect(api, mfa(api, challenge(api, account), recovery_code=recovery[1]), 200)
