"""Registration: the answer, enumeration resistance, email/phone validation, password policy."""

from __future__ import annotations

import uuid

import pytest

from support import STRONG_PASSWORD, Accounts, Api, Outbox, expect, unique_email, unique_phone


def register(api: Api, email: str, password: str = STRONG_PASSWORD, channel: str = "email", phone=None):
    body = {"email": email, "password": password, "activation_channel": channel}
    if phone is not None:
        body["phone"] = phone
    return api.post("/v1/accounts", body)


def assert_nothing_created(
    api: Api, outbox: Outbox, email: str, password: str, phone=None, email_valid: bool = True
) -> None:
    assert outbox.settle(email) == 0, f"a message went to {email!r}"
    if phone is not None:
        assert outbox.settle(phone, wait=0) == 0, f"a message went to {phone}"
    login = api.post("/v1/auth/login", {"email": email, "password": password})
    if email_valid or login.status_code == 401:
        expect(api, login, 401, "invalid_credentials")
    else:
        # Login may refuse a malformed email outright; it must never let it in.
        assert login.json()["error"]["code"] in ("invalid_email", "invalid_request"), login.text
        expect(api, login, 400)


def test_register_answers_202_and_sends_an_activation_code(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    response = register(api, email)
    assert expect(api, response, 202) == {"status": "pending_activation"}
    [message] = outbox.wait(email, "activation")
    assert message["channel"] == "email"
    assert message["subject"], message
    assert message["code"] in message["body"]


def test_existing_email_gets_the_identical_answer_and_keeps_its_password(
    api: Api, api_factory, accounts: Accounts, outbox: Outbox
) -> None:
    account = accounts.create(api)
    fresh = register(api, unique_email())
    other = api_factory()
    again = register(other, account.email, password="Different9Password")

    assert again.status_code == fresh.status_code == 202
    assert again.content == fresh.content, "the answer reveals that the email exists"
    assert again.headers.get("content-type") == fresh.headers.get("content-type")
    assert len(outbox.find(account.email, "activation")) == 1, "a new activation code was sent"

    wrong = api.post("/v1/auth/login", {"email": account.email, "password": "Different9Password"})
    expect(api, wrong, 401, "invalid_credentials")
    accounts.login(account)


def test_email_is_trimmed_and_lower_cased(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    local = f"Ada.{uuid.uuid4().hex[:12]}"
    shown = f"  {local}@Bedside.TEST \t"
    normal = f"{local.lower()}@bedside.test"
    expect(api, register(api, shown), 202)

    code = outbox.code(normal, "activation")
    activate = api.post("/v1/accounts/activate", {"email": normal, "code": code})
    expect(api, activate, 200)
    tokens = expect(api, api.post("/v1/auth/login", {"email": normal, "password": STRONG_PASSWORD}), 200)
    me = expect(api, api.get("/v1/me", token=tokens["access_token"]), 200)
    assert me["email"] == normal
    # The same normalisation applies at login.
    expect(api, api.post("/v1/auth/login", {"email": shown, "password": STRONG_PASSWORD}), 200)


def long_email(length: int) -> str:
    local = uuid.uuid4().hex + "a" * 32  # 64 characters, the most a local part may have
    domain_len = length - len(local) - 1
    labels = []
    while domain_len > 0:
        label = min(63, domain_len)
        if domain_len - label == 1:  # never leave a lone dot
            label -= 1
        labels.append("b" * label)
        domain_len -= label + 1
    return f"{local}@{'.'.join(labels)}"


def test_email_of_254_characters_is_accepted(api: Api, outbox: Outbox) -> None:
    email = long_email(254)
    assert len(email) == 254
    expect(api, register(api, email), 202)
    outbox.wait(email, "activation")


@pytest.mark.parametrize(
    "email",
    [
        "plainaddress",
        "",
        "   ",
        "missing-domain@",
        "@missing-local.test",
        "two@@bedside.test",
        "a@b@bedside.test",
        "with space@bedside.test",
        "nul\u0000byte@bedside.test",
        "rtl\u202eoverride@bedside.test",
        "newline\n@bedside.test",
        "long-unicode-" + "\u00e9" * 5000 + "@bedside.test",
        "too-long",
    ],
    ids=lambda e: repr(e[:24]),
)
def test_invalid_email_is_refused(api: Api, outbox: Outbox, email: str) -> None:
    if email == "too-long":
        email = long_email(255)
        assert len(email) == 255
    if email.strip():
        email = email.replace("@", f"-{uuid.uuid4().hex[:8]}@", 1) if "@" in email[1:] else email
    expect(api, register(api, email), 400, "invalid_email")
    assert_nothing_created(api, outbox, email, STRONG_PASSWORD, email_valid=False)


@pytest.mark.parametrize(
    "phone",
    ["41791234567", "+1234567", "+1234567890123456", "+41 79 123 45 67", "+41-79-1234567", "+4179abc4567", "+"],
)
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_invalid_phone_is_refused(api: Api, outbox: Outbox, phone: str, channel: str) -> None:
    email = unique_email()
    response = register(api, email, channel=channel, phone=phone)
    expect(api, response, 400, "invalid_phone")
    assert_nothing_created(api, outbox, email, STRONG_PASSWORD, phone=phone or None)


@pytest.mark.parametrize("phone", ["+12345678", "+123456789012345"])
def test_phone_length_bounds_are_accepted(api: Api, accounts: Accounts, phone: str) -> None:
    # Both ends of E.164's 8 to 15 digits; the number is made unique within its length.
    digits = len(phone) - 1
    phone = "+" + str(uuid.uuid4().int)[:digits]
    account = accounts.create(api, channel="sms", phone=phone)
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["phone"] == phone


def test_sms_without_phone_is_refused(api: Api, outbox: Outbox) -> None:
    email = unique_email()
    expect(api, register(api, email, channel="sms"), 400, "phone_required")
    assert_nothing_created(api, outbox, email, STRONG_PASSWORD)


def test_phone_with_email_channel_is_kept(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    phone = unique_phone()
    account = accounts.create(api, channel="email", phone=phone)
    assert outbox.find(phone) == [], "the code must go by email only"
    me = expect(api, api.get("/v1/me", token=account.access), 200)
    assert me["phone"] == phone and me["email"] == account.email


@pytest.mark.parametrize("channel", ["pigeon", "EMAIL", "", None, 1])
def test_unknown_activation_channel_is_invalid_request(api: Api, outbox: Outbox, channel) -> None:
    email = unique_email()
    expect(api, register(api, email, channel=channel), 400, "invalid_request")
    assert_nothing_created(api, outbox, email, STRONG_PASSWORD)


POLICY_CASES = [
    ("Ab1defg", "password_too_short"),
    ("", "password_too_short"),
    ("Ab1\U0001f600\U0001f600\U0001f600\U0001f600", "password_too_short"),  # 7 characters, 19 bytes
    ("Ab1" + "x" * 126, "password_too_long"),
    ("Ab1" + "\U0001f600" * 126, "password_too_long"),  # 129 characters
    ("Ab1" + "\u00e9" * 30000, "password_too_long"),
    ("abcdefg1", "password_too_weak"),
    ("ABCDEFG1", "password_too_weak"),
    ("Abcdefgh", "password_too_weak"),
    ("Password1", "password_too_common"),
    ("pASSWORD1", "password_too_common"),
    ("Password123", "password_too_common"),
]


@pytest.mark.parametrize("password,code", POLICY_CASES, ids=[c[1] + "-" + repr(c[0][:12]) for c in POLICY_CASES])
def test_password_policy(api: Api, outbox: Outbox, password: str, code: str) -> None:
    email = unique_email()
    expect(api, register(api, email, password=password), 400, code)
    assert_nothing_created(api, outbox, email, password)


@pytest.mark.parametrize(
    "password",
    [
        "Ab1\U0001f600\U0001f600\U0001f600\U0001f600\U0001f600",  # 8 characters, 23 bytes
        "Ab1" + "\U0001f600" * 125,  # 128 characters, 503 bytes
        "Ab1" + "y" * 125,
        "Ab1defgh",
        "Grüße aus Zürich 2026",
    ],
    ids=["8-with-emoji", "128-emoji", "128-ascii", "8-ascii", "unicode-words"],
)
def test_password_policy_bounds_are_counted_in_characters(api: Api, accounts: Accounts, password: str) -> None:
    account = accounts.create(api, password=password)
    assert account.access
