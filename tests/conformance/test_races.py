"""Single-use things stay single use when many requests race for them."""

from __future__ import annotations

from support import Accounts, Api, challenge, enable, expect
from test_lockout import parallel

RACERS = 10


def test_parallel_refresh_with_one_token_rotates_at_most_once(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    answers = parallel(api, "POST", "/v1/auth/refresh", [{"refresh_token": account.refresh}] * RACERS)
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) <= 1, f"{len(winners)} refreshes succeeded with one token"
    for answer in answers:
        if answer.status_code != 200:
            expect(api, answer, 401, "invalid_token")
    # The losers presented a spent token: the session is revoked, winner included.
    for winner in winners:
        pair = winner.json()
        expect(api, api.get("/v1/me", token=pair["access_token"]), 401, "invalid_token")
        expect(api, api.post("/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}), 401, "invalid_token")


def test_parallel_use_of_one_recovery_code_succeeds_at_most_once(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    _, recovery = enable(api, account)
    tokens = [challenge(api, account) for _ in range(4)]
    answers = parallel(api, "POST", "/v1/auth/mfa", [{"mfa_token": t, "recovery_code": recovery[0]} for t in tokens])
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) <= 1, f"one recovery code opened {len(winners)} sessions"
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code in (401, 429), answer.text


def test_parallel_use_of_one_totp_code_succeeds_at_most_once(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    app, _ = enable(api, account)
    code = app.code()
    tokens = [challenge(api, account) for _ in range(4)]
    answers = parallel(api, "POST", "/v1/auth/mfa", [{"mfa_token": t, "code": code} for t in tokens])
    winners = [a for a in answers if a.status_code == 200]
    assert len(winners) <= 1, f"one TOTP code opened {len(winners)} sessions"
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code in (401, 429), answer.text
