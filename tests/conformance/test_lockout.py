"""Lockout: parallel wrong passwords get at most the free attempts, then 429 with Retry-After."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import Accounts, Api, Config, Outbox, challenge, enable, enrol, expect, totp

PARALLEL = 50


def parallel(api: Api, method: str, path: str, bodies: list[dict], token: str | None = None) -> list[httpx.Response]:
    """Sends one request per body, all at once, each on a connection of its own, from `api`'s
    address."""
    barrier = threading.Barrier(len(bodies))
    transport_args = {"local_address": api.address} if api.address else {}
    headers = {"authorization": f"Bearer {token}"} if token else {}

    def one(body: dict) -> httpx.Response:
        with httpx.Client(
            base_url=api.config.base_url, transport=httpx.HTTPTransport(**transport_args), timeout=60.0
        ) as client:
            barrier.wait()
            return client.request(method, path, json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


def burst(api: Api, email: str, password: str, count: int) -> list[httpx.Response]:
    body = {"email": email, "password": password}
    return parallel(api, "POST", "/v1/auth/login", [body] * count)


def test_parallel_wrong_passwords_lock_the_account(
    api: Api, api_factory, accounts: Accounts, config: Config
) -> None:
    account = accounts.create(api, login=False)
    bystander = accounts.create(api_factory(), login=False)

    answers = burst(api, account.email, "Wrong9Password", PARALLEL)
    statuses = sorted(r.status_code for r in answers)
    refused = [r for r in answers if r.status_code == 401]
    locked = [r for r in answers if r.status_code == 429]
    assert len(refused) + len(locked) == PARALLEL, f"unexpected statuses: {statuses}"
    assert 1 <= len(refused) <= config.free_attempts, (
        f"expected at most {config.free_attempts} answers 401, got {len(refused)}: {statuses}"
    )
    for response in refused:
        expect(api, response, 401, "invalid_credentials")
    for response in locked:
        expect(api, response, 429, "too_many_attempts")
        assert int(response.headers["retry-after"]) >= 1

    right = api.post("/v1/auth/login", {"email": account.email, "password": account.password})
    expect(api, right, 429, "too_many_attempts")
    # The account is locked whichever address asks.
    elsewhere = api_factory()
    right = elsewhere.post("/v1/auth/login", {"email": account.email, "password": account.password})
    expect(elsewhere, right, 429, "too_many_attempts")

    # Another account is not affected.
    accounts.login(bystander)


def test_failures_below_the_threshold_do_not_lock(api: Api, accounts: Accounts, config: Config) -> None:
    account = accounts.create(api, login=False)
    for _ in range(max(config.free_attempts - 1, 0)):
        wrong = api.post("/v1/auth/login", {"email": account.email, "password": "Wrong9Password"})
        expect(api, wrong, 401, "invalid_credentials")
    accounts.login(account)


def wrong_codes(route: str, right: str, secret: str | None, count: int = 30) -> list[str]:
    """Codes of the right shape that are not valid now (not even in the TOTP drift window)."""
    if secret is None:
        return [w for w in (f"WRONG{i:03d}" for i in range(count + 1)) if w != right][:count]
    now = int(time.time() // 30)
    valid = {totp(secret, step=s) for s in range(now - 2, now + 4)}
    candidates = (f"{(i * 7919 + 13) % 1_000_000:06d}" for i in range(count + 10))
    return [c for c in candidates if c not in valid][:count]


def code_route(route: str, api: Api, accounts: Accounts, outbox: Outbox) -> dict:
    """Prepares a route that checks a code."""
    if route == "activation":
        account = accounts.register(api)
        return {
            "method": "POST", "path": "/v1/accounts/activate", "token": None, "status": 400, "secret": None,
            "right": outbox.code(account.email, "activation"),
            "body": lambda c: {"email": account.email, "code": c},
        }
    if route == "password_reset":
        account = accounts.create(api)
        expect(api, api.post("/v1/password-reset", {"email": account.email}), 202)
        return {
            "method": "POST", "path": "/v1/password-reset/confirm", "token": None, "status": 400, "secret": None,
            "right": outbox.code(account.email, "password_reset"),
            "body": lambda c: {"email": account.email, "code": c, "new_password": "Fresh8Meadow"},
        }
    account = accounts.create(api)
    if route == "totp_confirm":
        secret = enrol(api, account)["secret"]
        return {
            "method": "POST", "path": "/v1/me/totp/confirm", "token": account.access, "status": 400,
            "secret": secret, "right": totp(secret), "body": lambda c: {"code": c},
        }
    app, _ = enable(api, account)
    if route == "mfa":
        token = challenge(api, account)
        return {
            "method": "POST", "path": "/v1/auth/mfa", "token": None, "status": 401, "secret": app.secret,
            "right": app.code(), "body": lambda c: {"mfa_token": token, "code": c},
        }
    return {
        "method": "DELETE", "path": "/v1/me/totp", "token": account.access, "status": 401, "secret": app.secret,
        "right": app.code(), "body": lambda c: {"password": account.password, "code": c},
    }


@pytest.mark.parametrize("route", ["mfa", "totp_confirm", "totp_disable", "activation", "password_reset"])
def test_parallel_wrong_codes_are_limited(
    api: Api, accounts: Accounts, outbox: Outbox, config: Config, route: str
) -> None:
    # Failed codes count like failed logins: at most the free attempts are checked, then 429
    # until Retry-After, even for the right code.
    r = code_route(route, api, accounts, outbox)
    wrong = wrong_codes(route, r["right"], r["secret"])
    answers = parallel(api, r["method"], r["path"], [r["body"](c) for c in wrong], r["token"])

    refused = [a for a in answers if a.status_code == r["status"]]
    locked = [a for a in answers if a.status_code == 429]
    statuses = sorted(a.status_code for a in answers)
    assert len(refused) + len(locked) == len(wrong), f"unexpected statuses: {statuses}"
    assert len(refused) <= config.free_attempts, (
        f"expected at most {config.free_attempts} answers {r['status']} invalid_code, the rest 429; "
        f"got {len(refused)} {r['status']} and {len(locked)} 429"
    )
    for answer in refused:
        expect(api, answer, r["status"], "invalid_code")
    for answer in locked:
        expect(api, answer, 429, "too_many_attempts")
    response = api.request(r["method"], r["path"], json_body=r["body"](r["right"]), token=r["token"])
    expect(api, response, 429, "too_many_attempts")
