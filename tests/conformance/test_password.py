"""Password change (other sessions revoked) and password reset (all sessions revoked)."""

from __future__ import annotations

import pytest

from support import Account, Accounts, Api, Outbox, audit_records, expect, unique_email

NEW_PASSWORD = "Fresh8Meadow"


def login(api: Api, email: str, password: str):
    return api.post("/v1/auth/login", {"email": email, "password": password})


def change(api: Api, account: Account, current: str, new: str):
    return api.post(
        "/v1/me/password", {"current_password": current, "new_password": new}, token=account.access
    )


def reset(api: Api, email: str):
    return api.post("/v1/password-reset", {"email": email})


def confirm(api: Api, email: str, code: str, new: str):
    return api.post("/v1/password-reset/confirm", {"email": email, "code": code, "new_password": new})


def test_change_revokes_other_sessions_and_keeps_the_callers(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    other = dict(account.tokens)
    caller = accounts.login(account)

    response = change(api, account, account.password, NEW_PASSWORD)
    expect(api, response, 204)
    assert response.content == b""

    expect(api, api.get("/v1/me", token=caller["access_token"]), 200)
    expect(api, api.get("/v1/me", token=other["access_token"]), 401, "invalid_token")
    expect(api, api.post("/v1/auth/refresh", {"refresh_token": other["refresh_token"]}), 401, "invalid_token")
    expect(api, api.post("/v1/auth/refresh", {"refresh_token": caller["refresh_token"]}), 200)

    expect(api, login(api, account.email, account.password), 401, "invalid_credentials")
    expect(api, login(api, account.email, NEW_PASSWORD), 200)


def test_change_with_wrong_current_password_changes_nothing(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    other = dict(account.tokens)
    account.tokens = accounts.login(account)
    expect(api, change(api, account, "Wrong9Password", NEW_PASSWORD), 401, "invalid_credentials")
    expect(api, api.get("/v1/me", token=other["access_token"]), 200)
    expect(api, login(api, account.email, NEW_PASSWORD), 401, "invalid_credentials")
    expect(api, login(api, account.email, account.password), 200)


@pytest.mark.parametrize(
    "new,code",
    [
        ("Ab1defg", "password_too_short"),
        ("Ab1" + "x" * 126, "password_too_long"),
        ("abcdefg1", "password_too_weak"),
        ("Password1", "password_too_common"),
    ],
)
def test_change_enforces_the_policy(api: Api, accounts: Accounts, new: str, code: str) -> None:
    account = accounts.create(api)
    other = dict(account.tokens)
    account.tokens = accounts.login(account)
    expect(api, change(api, account, account.password, new), 400, code)
    expect(api, api.get("/v1/me", token=other["access_token"]), 200)
    expect(api, login(api, account.email, new), 401, "invalid_credentials")
    expect(api, login(api, account.email, account.password), 200)


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_reset_revokes_every_session(api: Api, accounts: Accounts, outbox: Outbox, channel: str) -> None:
    account = accounts.create(api, channel=channel)
    first = dict(account.tokens)
    second = accounts.login(account)

    assert expect(api, reset(api, account.email), 202) == {"status": "sent"}
    [message] = outbox.wait(account.to, "password_reset")
    assert message["channel"] == channel
    code = outbox.code(account.to, "password_reset")
    account.remember(code)
    response = confirm(api, account.email, code, NEW_PASSWORD)
    expect(api, response, 204)

    for pair in (first, second):
        expect(api, api.get("/v1/me", token=pair["access_token"]), 401, "invalid_token")
        expect(api, api.post("/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}), 401, "invalid_token")
    expect(api, login(api, account.email, account.password), 401, "invalid_credentials")
    expect(api, login(api, account.email, NEW_PASSWORD), 200)
    expect(api, confirm(api, account.email, code, "Another7Meadow"), 400, "invalid_code")


def test_reset_for_unknown_email_looks_the_same_and_sends_nothing(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    assert expect(api, reset(api, email), 202) == {"status": "sent"}
    assert outbox.settle(email) == 0


def test_reset_with_a_wrong_code_changes_nothing(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.create(api)
    expect(api, reset(api, account.email), 202)
    code = outbox.code(account.email, "password_reset")
    wrong = code[:-1] + ("A" if code[-1] != "A" else "B")
    expect(api, confirm(api, account.email, wrong, NEW_PASSWORD), 400, "invalid_code")
    expect(api, confirm(api, unique_email(), code, NEW_PASSWORD), 400, "invalid_code")
    expect(api, api.get("/v1/me", token=account.access), 200)
    expect(api, login(api, account.email, NEW_PASSWORD), 401, "invalid_credentials")
    expect(api, login(api, account.email, account.password), 200)


def test_activation_code_does_not_reset_a_password(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.create(api)
    activation = outbox.code(account.email, "activation")
    expect(api, confirm(api, account.email, activation, NEW_PASSWORD), 400, "invalid_code")
    expect(api, login(api, account.email, account.password), 200)


def test_reset_enforces_the_policy(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.create(api)
    expect(api, reset(api, account.email), 202)
    code = outbox.code(account.email, "password_reset")
    expect(api, confirm(api, account.email, code, "abcdefg1"), 400, "password_too_weak")
    expect(api, login(api, account.email, account.password), 200)
    records = audit_records(api, account.access)
    assert not [r for r in records if r["type"] == "password_reset" and r["outcome"] == "success"]
