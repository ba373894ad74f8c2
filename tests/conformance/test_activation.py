"""Activation by email and SMS, single-use codes, resend, and no login before activation."""

from __future__ import annotations

import re
import time

from support import Accounts, Api, Outbox, expect, unique_email


def other_code(code: str) -> str:
    """A code of the same shape that differs from `code` in its last character."""
    last = code[-1]
    swap = "1" if last != "1" else "2"
    if not last.isdigit():
        swap = "A" if last.upper() != "A" else "B"
    return code[:-1] + swap


def activate(api: Api, email: str, code: str):
    return api.post("/v1/accounts/activate", {"email": email, "code": code})


def login(api: Api, email: str, password: str):
    return api.post("/v1/auth/login", {"email": email, "password": password})


def test_activation_by_email(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    started = time.time()
    account = accounts.register(api)
    [message] = outbox.wait(account.email, "activation")
    assert message["channel"] == "email" and message["subject"]
    assert len(message["code"]) == 8, f"email codes have 8 characters: {message['code']!r}"
    assert message["code"] in message["body"]

    assert expect(api, activate(api, account.email, message["code"]), 200) == {"status": "active"}
    accounts.login(account)
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["email"] == account.email
    assert me["phone"] is None
    assert me["totp_enabled"] is False
    assert started - 120 <= me["created_at"] <= time.time() + 120, "created_at is unix seconds"


def test_activation_by_sms(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.register(api, channel="sms")
    [message] = outbox.wait(account.phone, "activation")
    assert message["channel"] == "sms"
    assert re.fullmatch(r"[0-9]{6}", message["code"]), f"sms codes have 6 digits: {message['code']!r}"
    assert message["code"] in message["body"]
    assert outbox.find(account.email) == [], "the code must go by sms only"

    expect(api, activate(api, account.email, message["code"]), 200)
    accounts.login(account)
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["phone"] == account.phone


def test_no_login_before_activation(api: Api, accounts: Accounts) -> None:
    account = accounts.register(api)
    expect(api, login(api, account.email, account.password), 403, "account_not_active")
    # A wrong password tells nothing about the account's state.
    expect(api, login(api, account.email, "Wrong9Password"), 401, "invalid_credentials")


def test_wrong_activation_code_is_refused_and_the_right_one_still_works(
    api: Api, accounts: Accounts, outbox: Outbox
) -> None:
    account = accounts.register(api)
    code = outbox.code(account.email, "activation")
    expect(api, activate(api, account.email, other_code(code)), 400, "invalid_code")
    expect(api, login(api, account.email, account.password), 403, "account_not_active")
    expect(api, activate(api, account.email, code), 200)
    accounts.login(account)


def test_activation_code_is_single_use(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.register(api)
    accounts.activate(account)
    code = outbox.code(account.email, "activation")
    expect(api, activate(api, account.email, code), 400, "invalid_code")
    accounts.login(account)


def test_activation_code_is_bound_to_its_account(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    first = accounts.register(api)
    second = accounts.register(api)
    code = outbox.code(first.email, "activation")
    expect(api, activate(api, second.email, code), 400, "invalid_code")
    expect(api, login(api, second.email, second.password), 403, "account_not_active")
    expect(api, activate(api, unique_email(), code), 400, "invalid_code")
    expect(api, activate(api, first.email, code), 200)


def test_sms_code_dies_after_five_wrong_tries(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.register(api, channel="sms")
    code = outbox.code(account.phone, "activation")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = activate(api, account.email, wrong)
        if response.status_code == 429:
            expect(api, response, 429, "too_many_attempts")
            time.sleep(min(int(response.headers["retry-after"]), 5) + 0.2)
            response = activate(api, account.email, wrong)
        expect(api, response, 400, "invalid_code")

    response = activate(api, account.email, code)
    if response.status_code == 429:
        expect(api, response, 429, "too_many_attempts")
        retry = int(response.headers["retry-after"])
        assert retry <= 5, f"unexpectedly long delay after 5 failures: {retry}"
        time.sleep(retry + 0.2)
        response = activate(api, account.email, code)
    assert response.status_code == 400 and response.json()["error"]["code"] in (
        "invalid_code",
        "code_expired",
    ), f"the code should be dead after 5 wrong tries, got {response.status_code} {response.text}"
    expect(api, response, 400)
    # Still not active; the failed codes may also have locked the account for a while.
    response = login(api, account.email, account.password)
    if response.status_code == 429:
        expect(api, response, 429, "too_many_attempts")
    else:
        expect(api, response, 403, "account_not_active")


def test_resend_answers_sent_and_throttles(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.register(api)
    outbox.wait(account.email, "activation")
    for _ in range(3):
        response = api.post("/v1/accounts/activate/resend", {"email": account.email})
        assert expect(api, response, 202) == {"status": "sent"}
    sent = outbox.settle(account.email, "activation")
    assert sent <= 2, f"at most one message per 60 s, got {sent} within seconds"

    latest = outbox.code(account.email, "activation", nth=sent)
    expect(api, activate(api, account.email, latest), 200)
    accounts.login(account)


def test_resend_for_unknown_email_looks_the_same_and_sends_nothing(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    response = api.post("/v1/accounts/activate/resend", {"email": email})
    assert expect(api, response, 202) == {"status": "sent"}
    assert outbox.settle(email) == 0


def test_resend_for_active_account_sends_nothing(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = accounts.create(api, login=False)
    response = api.post("/v1/accounts/activate/resend", {"email": account.email})
    assert expect(api, response, 202) == {"status": "sent"}
    assert outbox.settle(account.email, "activation") == 1
