"""Unicode edge cases in credentials: refused cleanly or kept exactly, never truncated."""

from __future__ import annotations

import json

import pytest

from support import STRONG_PASSWORD, Account, Accounts, Api, Outbox, describe, expect, unique_email

POLICY_CODES = {"invalid_request", "password_too_short", "password_too_long", "password_too_weak", "password_too_common"}


def raw_post(api: Api, path: str, data: bytes):
    return api.request("POST", path, content=data, headers={"content-type": "application/json"})


def test_lone_surrogate_in_password_is_refused(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    body = json.dumps({"email": email, "password": "PLACEHOLDER", "activation_channel": "email"}).encode()
    response = raw_post(api, "/v1/accounts", body.replace(b"PLACEHOLDER", b"Abcdefg1\\udc00"))
    assert response.status_code == 400, describe(response)
    assert response.json()["error"]["code"] in ("invalid_json", "invalid_request"), describe(response)
    expect(api, response, 400)
    assert outbox.settle(email) == 0


def test_surrogate_pair_escape_is_one_character(api: Api, accounts: Accounts) -> None:
    # "\ud83d\ude00" is one emoji: 7 of them plus "A1" make 9 characters, a valid password.
    email = unique_email()
    body = json.dumps({"email": email, "password": "P", "activation_channel": "email"}).encode()
    password_json = b"A1" + b"\\ud83d\\ude00" * 6 + b"b"
    expect(api, raw_post(api, "/v1/accounts", body.replace(b'"P"', b'"' + password_json + b'"')), 202)
    account = Account(api, email, "A1" + "\U0001f600" * 6 + "b")
    accounts.activate(account)
    accounts.login(account)


def test_lone_surrogate_in_login_is_refused(api: Api) -> None:
    body = b'{"email": "\\ud800@bedside.test", "password": "Abcdefg1"}'
    response = raw_post(api, "/v1/auth/login", body)
    assert response.status_code in (400, 401), describe(response)
    if response.status_code == 401:
        expect(api, response, 401, "invalid_credentials")
    else:
        assert response.json()["error"]["code"] in ("invalid_json", "invalid_request", "invalid_email")
        expect(api, response, 400)


HEAD = "Abcdefg1"


@pytest.mark.parametrize(
    "special",
    ["\u0000", "\u202e", "\u200b", "\ufeff", "\ud7ff\ue000", "e\u0301", "\U0010fffd"],
    ids=["nul", "rtl-override", "zero-width-space", "bom", "bmp-edges", "combining", "last-plane"],
)
def test_unusual_password_characters_are_refused_or_kept_exactly(
    api: Api, accounts: Accounts, outbox: Outbox, special: str
) -> None:
    email = unique_email()
    password = HEAD + special + "tail"
    body = {"email": email, "password": password, "activation_channel": "email"}
    response = api.post("/v1/accounts", body)
    if response.status_code == 400:
        assert response.json()["error"]["code"] in POLICY_CODES, describe(response)
        expect(api, response, 400)
        assert outbox.settle(email) == 0
        return
    expect(api, response, 202)
    account = Account(api, email, password)
    accounts.activate(account)
    accounts.login(account)
    # The password is compared whole: never cut at the unusual character.
    for near in (HEAD, password[:-1]):
        wrong = api.post("/v1/auth/login", {"email": email, "password": near})
        expect(api, wrong, 401, "invalid_credentials")


def test_very_long_unicode_password_is_too_long_not_an_error(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    password = "Ab1" + "\u4e2d" * 20000  # 60 KB of UTF-8 under the 64 KiB limit
    response = api.post("/v1/accounts", {"email": email, "password": password, "activation_channel": "email"})
    expect(api, response, 400, "password_too_long")
    assert outbox.settle(email) == 0


def test_very_long_unicode_login_is_refused_quickly(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api, login=False)
    password = STRONG_PASSWORD + "\U0001f600" * 15000
    response = api.post("/v1/auth/login", {"email": account.email, "password": password})
    expect(api, response, 401, "invalid_credentials")
    accounts.login(account)
