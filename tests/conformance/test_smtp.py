"""Activation mail delivered over SMTP (run by tests/suites/21-smtp.sh with a loopback sink).

BEDSIDE_SMTP_SINK  JSONL file the sink appends received messages to
BEDSIDE_SMTP_FROM  the sender address the host was configured with
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from support import STRONG_PASSWORD, Api, JsonlOutbox, expect, unique_email

SINK = os.environ.get("BEDSIDE_SMTP_SINK")
pytestmark = pytest.mark.skipif(not SINK, reason="BEDSIDE_SMTP_SINK is not set: no SMTP sink to read")


def received(to: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = Path(SINK or "")
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                mail = json.loads(line)
                if to in mail["rcpt_tos"]:
                    return mail
        time.sleep(0.1)
    raise AssertionError(f"no mail to {to} reached the sink within {timeout}s")


def candidates(body: str) -> list[str]:
    """Code-like words in the mail: 8 letters or digits (maybe split by one hyphen), not plain
    lower-case or capitalised words."""
    found = re.findall(r"(?<![A-Za-z0-9-])([A-Za-z0-9]{4}-?[A-Za-z0-9]{4})(?![A-Za-z0-9-])", body)
    return [w for w in dict.fromkeys(found) if not re.fullmatch(r"[A-Z]?[a-z-]+", w)]


def test_activation_mail_arrives_over_smtp_and_its_code_works(api: Api) -> None:
    email = unique_email("smtp")
    body = {"email": email, "password": STRONG_PASSWORD, "activation_channel": "email"}
    expect(api, api.post("/v1/accounts", body), 202)

    mail = received(email)
    sender = os.environ.get("BEDSIDE_SMTP_FROM", "noreply@bedside.test")
    assert email in mail["to"], f"To header: {mail['to']!r}"
    assert sender in mail["from"], f"From header: {mail['from']!r}"
    assert mail["mail_from"] == sender, f"envelope sender: {mail['mail_from']!r}"
    assert mail["subject"].strip(), "the mail has no subject"
    assert STRONG_PASSWORD not in mail["raw"], "the password was mailed"
    headers = mail["raw"].split("\r\n\r\n", 1)[0].lower()
    if "content-transfer-encoding:" in headers:
        # RFC 2045 section 4: a message using MIME encodings declares MIME-Version, or mail
        # readers show the encoded text as it is.
        assert "mime-version: 1.0" in headers, f"MIME-Version missing: {headers!r}"
        assert "content-type:" in headers, f"Content-Type missing: {headers!r}"

    # When the host also keeps its local outbox, its code must be the one in the mail.
    local = [m for m in JsonlOutbox(os.environ.get("BEDSIDE_OUTBOX", "/nonexistent")).messages() if m.get("to") == email]
    codes = [local[0]["code"]] if local else candidates(mail["body"])
    assert codes, f"no code in the mail body: {mail['body']!r}"
    assert codes[0] in mail["body"]

    for code in codes[:3]:
        response = api.post("/v1/accounts/activate", {"email": email, "code": code})
        if response.status_code == 200:
            break
    expect(api, response, 200)
    login = api.post("/v1/auth/login", {"email": email, "password": STRONG_PASSWORD})
    assert "access_token" in expect(api, login, 200)
