"""The audit export: complete, secret free, owner only, CSV, and a hash chain that
`bedside audit-verify` checks offline."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from support import (
    Account,
    Accounts,
    Api,
    Config,
    Outbox,
    audit_export,
    audit_records,
    challenge,
    enable,
    expect,
    mfa,
)

CSV_HEADER = "seq,time,type,outcome,requester,message,room_id,fields,prev_hash,hash"
ZERO_HASH = "0" * 64
WRONG_PASSWORD = "Wrong9Password"
NEW_PASSWORD = "Fresh8Meadow"


def login(api: Api, account: Account) -> dict:
    pair = expect(api, api.post("/v1/auth/login", {"email": account.email, "password": account.password}), 200)
    account.remember(pair["access_token"], pair["refresh_token"])
    return pair


def journey(api: Api, accounts: Accounts, outbox: Outbox) -> Account:
    """Walks an account through every security event of the accounts API."""
    account = accounts.create(api)
    account.remember(WRONG_PASSWORD)
    expect(api, api.post("/v1/auth/login", {"email": account.email, "password": WRONG_PASSWORD}), 401)

    app, recovery = enable(api, account)
    code = app.code()
    account.remember(code)
    expect(api, mfa(api, challenge(api, account), code=code), 200)
    by_recovery = expect(api, mfa(api, challenge(api, account), recovery_code=recovery[0]), 200)
    account.remember(by_recovery["access_token"], by_recovery["refresh_token"])
    expect(api, api.post("/v1/auth/logout", token=by_recovery["access_token"]), 204)
    disable = {"password": account.password, "code": recovery[1]}
    expect(api, api.delete("/v1/me/totp", disable, token=account.access), 204)

    body = {"current_password": account.password, "new_password": NEW_PASSWORD}
    expect(api, api.post("/v1/me/password", body, token=account.access), 204)
    account.password = NEW_PASSWORD
    account.remember(NEW_PASSWORD)

    stolen = login(api, account)["refresh_token"]
    rotated = expect(api, api.post("/v1/auth/refresh", {"refresh_token": stolen}), 200)
    account.remember(rotated["access_token"], rotated["refresh_token"])
    expect(api, api.post("/v1/auth/refresh", {"refresh_token": stolen}), 401, "invalid_token")

    expect(api, api.post("/v1/password-reset", {"email": account.email}), 202)
    reset_code = outbox.code(account.email, "password_reset")
    account.remember(reset_code)
    account.password = "Final7Harbour"
    account.remember(account.password)
    body = {"email": account.email, "code": reset_code, "new_password": account.password}
    expect(api, api.post("/v1/password-reset/confirm", body), 204)
    account.tokens = login(api, account)
    return account


def test_records_are_complete_and_well_formed(api: Api, accounts: Accounts, outbox: Outbox, config: Config) -> None:
    started = int(time.time() * 1000)
    account = journey(api, accounts, outbox)
    records = audit_records(api, account.access)
    ended = int(time.time() * 1000)

    schema = api.contract.doc["components"]["schemas"]["AuditRecord"]
    types = [r["type"] for r in records]
    expected = {
        "account_registered",
        "account_activated",
        "connection_success",
        "connection_failure",
        "totp_enabled",
        "totp_disabled",
        "logout",
        "password_changed",
        "token_reuse_detected",
        "password_reset",
    }
    assert expected <= set(types), f"missing record types: {expected - set(types)}; got {types}"
    assert types[0] == "account_registered", types

    for record in records:
        assert set(schema["required"]) <= set(record), record
        assert record["outcome"] in ("success", "failure"), record
        assert record["requester"] in (None, account.id), record
        assert started - 5000 <= record["time"] <= ended + 5000, f"time is unix ms: {record}"
        address = record["fields"].get("client_address")
        assert isinstance(address, str) and address, f"no client_address: {record}"
        if config.own_addresses:
            assert api.address in address, f"expected client address {api.address}: {record}"
        assert re.fullmatch(r"[0-9a-f]{64}", record["hash"]) and re.fullmatch(r"[0-9a-f]{64}", record["prev_hash"])

    for kind in ("totp_enabled", "totp_disabled", "logout", "password_changed"):
        for record in (r for r in records if r["type"] == kind):
            assert record["requester"] == account.id, f"{kind} names who asked: {record}"
            assert record["outcome"] == "success", record
    failures = [r for r in records if r["type"] == "connection_failure"]
    assert all(r["outcome"] == "failure" for r in failures), failures
    assert any(r["fields"].get("error_code", "invalid_credentials") == "invalid_credentials" for r in failures)
    successes = [r for r in records if r["type"] == "connection_success"]
    assert len(successes) >= 4 and all(r["outcome"] == "success" for r in successes), successes
    methods = {r["fields"]["method"] for r in successes if "method" in r["fields"]}
    assert not methods or {"password", "totp", "recovery_code"} <= methods, methods

    seqs = [r["seq"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"oldest first: {seqs}"
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert records[0]["prev_hash"] == ZERO_HASH
    for before, after in zip(records, records[1:]):
        assert after["prev_hash"] == before["hash"], f"chain broken at seq {after['seq']}"


def test_no_secret_ever_appears_in_the_export(api: Api, accounts: Accounts, outbox: Outbox) -> None:
    account = journey(api, accounts, outbox)
    exports = {fmt: audit_export(api, account.access, fmt).text for fmt in ("jsonl", "csv")}
    for fmt, text in exports.items():
        assert text.strip(), fmt
        for secret in set(account.secrets):
            if len(secret) < 8:
                # Short codes could occur by chance inside hashes or times: match whole tokens.
                found = re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", text)
            else:
                found = secret in text
            assert not found, f"secret {secret[:3]}… appears in the {fmt} export"


def test_csv_export(api: Api, accounts: Accounts) -> None:
    account = accounts.create(api)
    expect(api, api.post("/v1/auth/logout", token=login(api, account)["access_token"]), 204)
    records = audit_records(api, account.access)

    response = audit_export(api, account.access, "csv")
    expect(api, response, 200)
    assert response.headers["content-type"].split(";")[0].strip() == "text/csv"
    lines = response.text.splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert int(row["seq"]) == record["seq"] and row["type"] == record["type"], (row, record)
        assert int(row["time"]) == record["time"] and row["hash"] == record["hash"], (row, record)
        assert json.loads(row["fields"]) == record["fields"], (row, record)

    explicit = audit_export(api, account.access, "jsonl")
    assert explicit.text == audit_export(api, account.access).text


@pytest.mark.parametrize("fmt", ["xml", "JSONL", "", "csv,jsonl"])
def test_unknown_export_format_is_400(api: Api, accounts: Accounts, fmt: str) -> None:
    account = accounts.create(api)
    expect(api, audit_export(api, account.access, fmt), 400, "invalid_request")


def test_export_needs_a_token(api: Api) -> None:
    expect(api, api.get("/v1/me/audit"), 401, "unauthorized")


def test_export_shows_only_the_owners_records(api: Api, api_factory, accounts: Accounts) -> None:
    first = accounts.create(api)
    second_api = api_factory()
    second = accounts.create(second_api)
    # Each fails a login on the other's account, from its own address.
    expect(api, api.post("/v1/auth/login", {"email": second.email, "password": WRONG_PASSWORD}), 401)
    expect(second_api, second_api.post("/v1/auth/login", {"email": first.email, "password": WRONG_PASSWORD}), 401)

    for owner, other in ((first, second), (second, first)):
        response = audit_export(owner.api, owner.access)
        records = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        assert records, "the export is empty"
        assert all(r["requester"] in (None, owner.id) for r in records), records
        assert other.id not in response.text and other.email not in response.text
        csv_text = audit_export(owner.api, owner.access, "csv").text
        assert other.id not in csv_text and other.email not in csv_text
        # The failure the other client caused on this account is this account's record.
        assert any(r["type"] == "connection_failure" for r in records), [r["type"] for r in records]


# --- offline verification -----------------------------------------------------------------------


def export_file(api: Api, accounts: Accounts, tmp_path: Path) -> tuple[Path, list[str]]:
    account = accounts.create(api)
    expect(api, api.post("/v1/auth/login", {"email": account.email, "password": WRONG_PASSWORD}), 401)
    second = login(api, account)
    expect(api, api.post("/v1/auth/logout", token=second["access_token"]), 204)
    login(api, account)
    text = audit_export(api, account.access).text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 5, lines
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def verify(binary: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "audit-verify", str(path)], capture_output=True, text=True, timeout=60
    )


def test_audit_verify_accepts_an_intact_export(api: Api, accounts: Accounts, binary: str, tmp_path: Path) -> None:
    path, lines = export_file(api, accounts, tmp_path)
    result = verify(binary, path)
    assert result.returncode == 0, f"rc {result.returncode}: {result.stdout} {result.stderr}"
    assert f"ok: {len(lines)} records" in result.stdout, result.stdout


def edit_message(lines: list[str], k: int) -> None:
    record = json.loads(lines[k])
    record["message"] = record["message"] + " (edited)"
    lines[k] = json.dumps(record, separators=(",", ":"))


def flip_outcome(lines: list[str], k: int) -> None:
    record = json.loads(lines[k])
    record["outcome"] = "failure" if record["outcome"] == "success" else "success"
    lines[k] = json.dumps(record, separators=(",", ":"))


def edit_time(lines: list[str], k: int) -> None:
    lines[k] = re.sub(r'"time":\s*(\d+)', lambda m: f'"time":{int(m.group(1)) + 1}', lines[k], count=1)


def garbage(lines: list[str], k: int) -> None:
    lines[k] = "this is not json"


def delete(lines: list[str], k: int) -> None:
    del lines[k]


def swap(lines: list[str], k: int) -> None:
    lines[k], lines[k + 1] = lines[k + 1], lines[k]


TAMPERINGS = [edit_message, flip_outcome, edit_time, garbage, delete, swap]


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=[t.__name__ for t in TAMPERINGS])
def test_audit_verify_names_the_first_broken_record(
    api: Api, accounts: Accounts, binary: str, tmp_path: Path, tamper
) -> None:
    path, lines = export_file(api, accounts, tmp_path)
    k = len(lines) // 2  # a record in the middle, 0-based
    seqs = {json.loads(lines[k])["seq"], json.loads(lines[k + 1])["seq"]}
    tampered = list(lines)
    tamper(tampered, k)
    path.write_text("\n".join(tampered) + "\n", encoding="utf-8")

    result = verify(binary, path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"tampering not detected (rc {result.returncode}): {output}"
    assert "ok:" not in result.stdout
    names_line = re.search(rf"\bline\D{{0,3}}{k + 1}\b", output, re.IGNORECASE)
    names_seq = any(re.search(rf"\bseq\D{{0,3}}{s}\b", output, re.IGNORECASE) for s in seqs)
    assert names_line or names_seq, f"expected line {k + 1} or seq {sorted(seqs)} named: {output}"


def test_forwarded_headers_from_an_untrusted_client_are_ignored(api: Api, accounts: Accounts, config: Config) -> None:
    if not config.own_addresses:
        pytest.skip("the suite does not control client addresses here (behind a proxy)")
    account = accounts.create(api)
    spoofed = {"x-forwarded-for": "203.0.113.7", "forwarded": "for=203.0.113.7", "x-real-ip": "203.0.113.7"}
    response = api.request(
        "POST",
        "/v1/auth/login",
        json_body={"email": account.email, "password": WRONG_PASSWORD},
        headers=spoofed,
    )
    expect(api, response, 401, "invalid_credentials")
    records = audit_records(api, account.access)
    failure = [r for r in records if r["type"] == "connection_failure"][-1]
    assert api.address in failure["fields"]["client_address"], failure
    assert "203.0.113.7" not in json.dumps(records)
