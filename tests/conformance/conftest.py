"""Fixtures of the conformance suite; the deployment under test comes from the environment:

BEDSIDE_BASE_URL               where the API answers, e.g. http://127.0.0.1:8080 (required)
BEDSIDE_OUTBOX                 JSONL file the deployment's local message sink appends to
BEDSIDE_BIN                    the `bedside` binary, for `bedside audit-verify FILE`
BEDSIDE_LOCKOUT_FREE_ATTEMPTS  failed attempts the server allows before it answers 429 (5)
BEDSIDE_CLIENT_ADDRESSES       auto (own 127.x.y.z source address per test on loopback), on, off
BEDSIDE_SERVER_LOG             the server's log; checked at the end for any secret the tests used

A deployment whose messages land elsewhere overrides the `outbox_source` fixture with any object
that has a `messages()` method (see `support.OutboxSource`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support import (
    SEEN_SECRETS,
    STRONG_PASSWORD,
    Accounts,
    AddressPool,
    Api,
    Config,
    Contract,
    JsonlOutbox,
    Outbox,
    OutboxSource,
)


@pytest.fixture(scope="session", autouse=True)
def server_log_stays_secret_free() -> Iterator[None]:
    """After the run, no password, code, token or seed that a test used is in the server log."""
    yield
    path = os.environ.get("BEDSIDE_SERVER_LOG")
    if not path:
        return
    time.sleep(0.5)  # let the last lines reach the file
    log = Path(path).read_text(encoding="utf-8", errors="replace")
    leaked = set()
    for secret in SEEN_SECRETS | {STRONG_PASSWORD}:
        if len(secret) >= 8 and secret in log:
            leaked.add(secret)
        elif re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", log):
            leaked.add(secret)
    assert not leaked, f"secrets in the server log: {sorted(s[:6] + '…' for s in leaked)}"


@pytest.fixture(scope="session")
def config() -> Config:
    config = Config.from_env()
    if not config.base_url:
        pytest.fail("BEDSIDE_BASE_URL is not set: point it at the deployment under test")
    return config


@pytest.fixture(scope="session")
def contract() -> Contract:
    return Contract.load()


@pytest.fixture(scope="session")
def address_pool() -> AddressPool:
    return AddressPool()


@pytest.fixture
def api_factory(config: Config, contract: Contract, address_pool: AddressPool) -> Iterator[Callable[[], Api]]:
    """Makes clients, each from a client address of its own when the suite controls addresses."""
    made: list[Api] = []

    def make() -> Api:
        api = Api(config, contract, address_pool.next() if config.own_addresses else None)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(api_factory: Callable[[], Api]) -> Api:
    return api_factory()


@pytest.fixture(scope="session")
def outbox_source(config: Config) -> OutboxSource:
    if not config.outbox:
        pytest.fail("BEDSIDE_OUTBOX is not set: the suite reads activation and reset codes from it")
    return JsonlOutbox(config.outbox)


@pytest.fixture(scope="session")
def outbox(outbox_source: OutboxSource) -> Outbox:
    return Outbox(outbox_source)


@pytest.fixture(scope="session")
def accounts(outbox: Outbox) -> Accounts:
    return Accounts(outbox)


@pytest.fixture
def binary(config: Config) -> str:
    if not config.binary:
        pytest.skip("BEDSIDE_BIN is not set: no binary for offline audit verification")
    return config.binary
