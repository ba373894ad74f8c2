"""Lockout: parallel wrong passwords get at most the free attempts, then 429 with Retry-After."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from support import Accounts, Api, Config, expect

PARALLEL = 50


def burst(api: Api, email: str, password: str, count: int) -> list[httpx.Response]:
    """Sends `count` logins at once, each on a connection of its own, from `api`'s address."""
    barrier = threading.Barrier(count)
    transport_args = {"local_address": api.address} if api.address else {}

    def one(_: int) -> httpx.Response:
        with httpx.Client(
            base_url=api.config.base_url, transport=httpx.HTTPTransport(**transport_args), timeout=60.0
        ) as client:
            barrier.wait()
            return client.post("/v1/auth/login", json={"email": email, "password": password})

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


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
