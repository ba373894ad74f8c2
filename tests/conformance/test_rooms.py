"""Rooms: requesting, accepting, aborting and ending a call; who may see a room; the ICE
configuration; the audit records in both participants' chains.

The signaling channel itself (WebSocket) is exercised end to end by the native host's Rust tests
(`functions/host/tests/rooms.rs`).

Optional environment: `BEDSIDE_TURN_SECRET` (the relays' shared secret the deployment was given:
credentials are then checked exactly) and `BEDSIDE_ROOM_RING_SECS` (the deployment's ring time;
the deadline test runs when it is at most 5 seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from typing import Any

import httpx
import pytest

from support import Account, Accounts, Api

ROOM_ID = re.compile(r"^[0-9a-f]{32}$")


def expect_at(api: Api, response: httpx.Response, template: str, status: int, code: str | None = None) -> Any:
    """Like `support.expect`, for paths with an id: checks the answer against the document's
    entry for `template` (e.g. `/v1/rooms/{id}/accept`)."""
    what = f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:300]!r}"
    assert response.status_code == status, f"expected {status} {code or ''}, got {what}"
    body = response.json() if response.content else None
    if status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), what
        if code is not None:
            assert body["error"]["code"] == code, f"expected code {code}, got {what}"
    problems = api.contract.check(response.request.method, template, response)
    assert not problems, f"answer disagrees with openapi.json: {problems}; {what}"
    return body


def create_room(api: Api, caller: Account, invitee: str) -> dict[str, Any]:
    response = api.post("/v1/rooms", {"invitee": invitee}, token=caller.access)
    return expect_at(api, response, "/v1/rooms", 201)


def room_call(api: Api, method: str, room: str, action: str, who: Account) -> httpx.Response:
    path = f"/v1/rooms/{room}" + (f"/{action}" if action else "")
    return api.request(method, path, token=who.access)


def template(action: str) -> str:
    return "/v1/rooms/{id}" + (f"/{action}" if action else "")


def records_for(api: Api, who: Account, room: str) -> list[dict[str, Any]]:
    response = api.get("/v1/me/audit", token=who.access)
    assert response.status_code == 200, response.text
    import json

    records = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return [r for r in records if r.get("room_id") == room]


@pytest.fixture
def trio(api: Api, accounts: Accounts) -> tuple[Account, Account, Account]:
    return accounts.create(api), accounts.create(api), accounts.create(api)


def test_a_call_is_requested_accepted_and_ended_in_both_chains(api: Api, trio) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.email)
    assert ROOM_ID.match(room["id"])
    assert room["state"] == "ringing"
    assert (room["caller"], room["invitee"]) == (alice.id, bob.id)
    assert room["ring_deadline"] > room["created_at"]
    assert (room["accepted_at"], room["ended_at"], room["end_reason"]) == (None, None, None)

    seen = expect_at(api, room_call(api, "GET", room["id"], "", bob), template(""), 200)
    assert seen == room

    accepted = expect_at(api, room_call(api, "POST", room["id"], "accept", bob), template("accept"), 200)
    assert accepted["state"] == "active" and accepted["accepted_at"] is not None
    again = room_call(api, "POST", room["id"], "accept", bob)
    expect_at(api, again, template("accept"), 409, "room_not_ringing")

    ended = expect_at(api, room_call(api, "POST", room["id"], "abort", alice), template("abort"), 200)
    assert (ended["state"], ended["end_reason"]) == ("ended", "hangup")
    expect_at(api, room_call(api, "POST", room["id"], "abort", bob), template("abort"), 409, "room_closed")

    for who in (alice, bob):
        kinds = [r["type"] for r in records_for(api, who, room["id"])]
        assert kinds == ["session_request", "session_accepted", "session_ended"], (who.email, kinds)
    request = records_for(api, bob, room["id"])[0]
    assert request["requester"] == alice.id, "the invitee's chain names who called"


def test_strangers_learn_nothing_about_a_room(api: Api, trio) -> None:
    alice, bob, carol = trio
    room = create_room(api, alice, bob.id)
    for method, action in (("GET", ""), ("POST", "accept"), ("POST", "abort"), ("GET", "ice")):
        response = room_call(api, method, room["id"], action, carol)
        expect_at(api, response, template(action), 404, "not_found")
    unknown = "0" * 32
    expect_at(api, room_call(api, "GET", unknown, "", alice), template(""), 404, "not_found")
    assert records_for(api, carol, room["id"]) == []
    # Not a room id at all: the route does not exist.
    assert api.get("/v1/rooms/not-a-room", token=alice.access).status_code == 404


def test_only_the_invitee_accepts(api: Api, trio) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.id)
    expect_at(api, room_call(api, "POST", room["id"], "accept", alice), template("accept"), 403, "not_invitee")


@pytest.mark.parametrize("side,reason", [("caller", "cancelled"), ("invitee", "declined")])
def test_a_ringing_call_is_aborted_by_either_side(api: Api, trio, side: str, reason: str) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.id)
    who = alice if side == "caller" else bob
    aborted = expect_at(api, room_call(api, "POST", room["id"], "abort", who), template("abort"), 200)
    assert (aborted["state"], aborted["end_reason"]) == ("aborted", reason)
    expect_at(api, room_call(api, "POST", room["id"], "accept", bob), template("accept"), 409, "room_closed")
    for account in (alice, bob):
        kinds = [r["type"] for r in records_for(api, account, room["id"])]
        assert kinds == ["session_request", "session_aborted"], kinds


def test_invitations_are_checked(api: Api, accounts: Accounts, trio) -> None:
    alice, _, _ = trio
    post = lambda body, token=alice.access: api.post("/v1/rooms", body, token=token)  # noqa: E731
    expect_at(api, post({"invitee": alice.email}), "/v1/rooms", 400, "cannot_invite_self")
    expect_at(api, post({"invitee": alice.id.upper()}), "/v1/rooms", 404, "invitee_unknown")
    expect_at(api, post({"invitee": "nobody-at-all@bedside.test"}), "/v1/rooms", 404, "invitee_unknown")
    expect_at(api, post({"invitee": "not an email@"}), "/v1/rooms", 400, "invalid_email")
    expect_at(api, post({"invitee": alice.id, "topic": "x"}), "/v1/rooms", 400, "invalid_request")
    expect_at(api, post({}), "/v1/rooms", 400, "invalid_request")
    expect_at(api, post({"invitee": alice.id}, token=None), "/v1/rooms", 401, "unauthorized")
    pending = accounts.register(api)
    expect_at(api, post({"invitee": pending.email}), "/v1/rooms", 404, "invitee_unknown")


def test_ice_configuration_is_per_participant(api: Api, trio) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.id)
    response = room_call(api, "GET", room["id"], "ice", alice)
    if response.status_code == 503:
        expect_at(api, response, template("ice"), 503, "ice_unavailable")
        pytest.skip("the deployment has no relays configured")
    mine = expect_at(api, response, template("ice"), 200)
    theirs = expect_at(api, room_call(api, "GET", room["id"], "ice", bob), template("ice"), 200)

    assert mine["iceTransportPolicy"] == "all"
    assert 0 < mine["ttl"] <= 24 * 3600
    stun, turn = mine["iceServers"]
    assert all(url.startswith("stun:") for url in stun["urls"]) and "credential" not in stun
    kinds = [re.sub(r"^(turns?):[^?]*", r"\1", url) for url in turn["urls"][:3]]
    assert kinds == ["turn?transport=udp", "turn?transport=tcp", "turns?transport=tcp"], turn["urls"]
    assert turn["urls"][2].split("?")[0].endswith(":443")

    expiry, room_id, account = turn["username"].split(":")
    assert (room_id, account) == (room["id"], alice.id)
    assert abs(int(expiry) - (time.time() + mine["ttl"])) < 120
    assert theirs["iceServers"][1]["username"].endswith(f":{room['id']}:{bob.id}")
    assert theirs["iceServers"][1]["credential"] != turn["credential"]
    assert len(base64.b64decode(turn["credential"])) == 20, "HMAC-SHA1"
    secret = os.environ.get("BEDSIDE_TURN_SECRET")
    if secret:
        digest = hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(digest).decode()
        assert secret not in response.text

    expect_at(api, room_call(api, "POST", room["id"], "abort", alice), template("abort"), 200)
    expect_at(api, room_call(api, "GET", room["id"], "ice", bob), template("ice"), 409, "room_closed")


def test_the_signaling_channel_needs_a_live_room_and_an_upgrade(api: Api, trio) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.id)
    plain = api.get(f"/v1/rooms/{room['id']}/ws")
    expect_at(api, plain, template("ws"), 400, "invalid_request")
    expect_at(api, room_call(api, "POST", room["id"], "abort", bob), template("abort"), 200)
    gone = api.get(f"/v1/rooms/{room['id']}/ws")
    expect_at(api, gone, template("ws"), 404, "not_found")


@pytest.mark.skipif(
    int(os.environ.get("BEDSIDE_ROOM_RING_SECS", "90")) > 5,
    reason="needs a deployment with BEDSIDE_ROOM_RING_SECS of at most 5",
)
def test_an_unanswered_call_is_aborted_once_at_its_deadline(api: Api, trio) -> None:
    alice, bob, _ = trio
    room = create_room(api, alice, bob.id)
    time.sleep(room["ring_deadline"] - room["created_at"] + 1.1)
    seen = [expect_at(api, room_call(api, "GET", room["id"], "", who), template(""), 200) for who in (alice, bob, alice)]
    assert {(s["state"], s["end_reason"]) for s in seen} == {("aborted", "ring_timeout")}
    expect_at(api, room_call(api, "POST", room["id"], "accept", bob), template("accept"), 409, "room_closed")
    for who in (alice, bob):
        kinds = [r["type"] for r in records_for(api, who, room["id"])]
        assert kinds == ["session_request", "session_aborted"], kinds
