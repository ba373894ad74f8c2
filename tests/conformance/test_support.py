"""The suite's own TOTP against the RFC 6238 test vectors (SHA-1), so a refused code is the
server's fault, not the suite's."""

from __future__ import annotations

import base64

import pytest

from support import Authenticator, hotp, totp

SECRET = b"12345678901234567890"


@pytest.mark.parametrize(
    "at,expected",
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc6238_sha1_vectors(at: int, expected: str) -> None:
    assert hotp(SECRET, at // 30, digits=8) == expected
    assert totp(base64.b32encode(SECRET).decode(), at=at) == expected[-6:]


def test_authenticator_never_repeats_a_step() -> None:
    app = Authenticator(base64.b32encode(SECRET).decode())
    app.code()
    first = app.last_step
    app.code()
    assert app.last_step is not None and first is not None and app.last_step > first
