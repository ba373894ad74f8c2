"""Building blocks of the Bedside HTTP API conformance suite.

Everything here talks to the API as an outside client would: HTTP requests, the outbox where
messages land, and the `bedside` binary for offline checks. Nothing depends on how or where the
server runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import random
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol
from urllib.parse import urlsplit

import httpx
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "functions" / "core" / "openapi.json"
MAX_BODY = 64 * 1024


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What the suite knows about the deployment under test (all from the environment)."""

    base_url: str
    outbox: str | None
    binary: str | None
    free_attempts: int
    own_addresses: bool

    @staticmethod
    def from_env() -> "Config":
        base_url = os.environ.get("BEDSIDE_BASE_URL", "").rstrip("/")
        host = urlsplit(base_url).hostname or ""
        loopback = host in ("127.0.0.1", "localhost")
        # Failed attempts are counted per client address, so on loopback every test speaks from an
        # address of its own in 127.0.0.0/8. Deployments behind a proxy turn this off.
        own = os.environ.get("BEDSIDE_CLIENT_ADDRESSES", "auto")
        return Config(
            base_url=base_url,
            outbox=os.environ.get("BEDSIDE_OUTBOX") or None,
            binary=os.environ.get("BEDSIDE_BIN") or None,
            free_attempts=int(os.environ.get("BEDSIDE_LOCKOUT_FREE_ATTEMPTS", "5")),
            own_addresses=(own == "on") or (own == "auto" and loopback),
        )


class AddressPool:
    """Hands out distinct loopback source addresses (127.x.y.z, never 127.0.0.1)."""

    def __init__(self) -> None:
        start = random.SystemRandom().randrange(0, 200 * 250 * 250)
        self._numbers = itertools.count(start)

    def next(self) -> str:
        n = next(self._numbers) % (250 * 250 * 250)
        return f"127.{1 + n // 62500}.{n // 250 % 250}.{1 + n % 250}"


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:16]}@bedside.test"


def unique_phone() -> str:
    return "+4179" + "".join(random.choice("0123456789") for _ in range(7))


# --- the OpenAPI document as a response checker --------------------------------------------------


class Contract:
    """Checks answers against the OpenAPI document: status documented, body matches schema."""

    URI = "urn:bedside:openapi"

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(self.URI, resource)

    @staticmethod
    def load() -> "Contract":
        return Contract(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))

    def deref(self, obj: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Follows an OpenAPI `$ref` to a component; answers the object and its JSON pointer."""
        pointer = None
        while "$ref" in obj:
            pointer = obj["$ref"].removeprefix("#")
            obj = self.doc
            for part in pointer.strip("/").split("/"):
                obj = obj[part.replace("~1", "/").replace("~0", "~")]
        return obj, pointer

    def template(self, path: str) -> str:
        """The document's path template that `path` falls under (itself when none matches)."""
        if path in self.doc["paths"]:
            return path
        parts = path.strip("/").split("/")
        for candidate in self.doc["paths"]:
            pattern = candidate.strip("/").split("/")
            if len(pattern) == len(parts) and all(
                (p.startswith("{") and p.endswith("}") and part) or p == part
                for p, part in zip(pattern, parts)
            ):
                return candidate
        return path

    def response_spec(self, method: str, path: str, status: int) -> tuple[dict, str] | None:
        path = self.template(path)
        item = self.doc["paths"].get(path)
        if item is None:
            ref = "#/components/responses/NotFound"
        elif method.lower() not in item:
            ref = "#/components/responses/MethodNotAllowed"
        else:
            responses = item[method.lower()]["responses"]
            key = str(status) if str(status) in responses else "default"
            escaped = path.replace("~", "~0").replace("/", "~1")
            base = f"/paths/{escaped}/{method.lower()}/responses/{key}"
            spec, pointer = self.deref(responses[key])
            return spec, pointer or base
        spec, pointer = self.deref({"$ref": ref})
        return spec, pointer or ref

    def check(self, method: str, path: str, response: httpx.Response) -> list[str]:
        """Answers what in `response` disagrees with the document (empty when it conforms)."""
        found = self.response_spec(method, path, response.status_code)
        if found is None:
            return []
        spec, pointer = found
        problems = []
        for name, header in spec.get("headers", {}).items():
            header, _ = self.deref(header)
            if header.get("required") and name.lower() not in response.headers:
                problems.append(f"header {name} missing")
        content = spec.get("content")
        if not content:
            if response.content:
                problems.append(f"expected no body, got {response.content[:200]!r}")
            return problems
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in content:
            problems.append(f"content-type {ctype!r} not among {sorted(content)}")
            return problems
        if ctype != "application/json":
            return problems
        try:
            body = response.json()
        except ValueError:
            return problems + [f"body is not JSON: {response.content[:200]!r}"]
        schema_pointer = f"{pointer}/content/application~1json/schema"
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{self.URI}#{schema_pointer}"}, registry=self.registry
        )
        for error in validator.iter_errors(body):
            problems.append(f"body does not match the document: {error.message}")
        return problems


# --- HTTP client ---------------------------------------------------------------------------------


class Api:
    """An HTTP client of the API speaking from one client address."""

    def __init__(self, config: Config, contract: Contract, address: str | None) -> None:
        self.config = config
        self.contract = contract
        self.address = address
        transport = httpx.HTTPTransport(local_address=address) if address else None
        self.http = httpx.Client(
            base_url=config.base_url, transport=transport, timeout=30.0, follow_redirects=False
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        if json_body is not None:
            content = json.dumps(json_body, ensure_ascii=False).encode()
            all_headers.setdefault("content-type", "application/json")
        return self.http.request(method, path, content=content, headers=all_headers, params=params)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json_body=body, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, json_body=body, **kw)


def describe(response: httpx.Response) -> str:
    request = response.request
    return (
        f"{request.method} {request.url.path} -> {response.status_code} "
        f"{response.headers.get('content-type', '')!r} {response.text[:300]!r}"
    )


def expect(api: Api, response: httpx.Response, status: int, code: str | None = None) -> Any:
    """Asserts the status (and error code), checks the answer against the document, answers the
    parsed JSON body (or None when there is none)."""
    what = describe(response)
    assert response.status_code == status, f"expected {status} {code or ''}, got {what}"
    body = None
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.content and (media == "application/json" or media.endswith("+json")):
        body = response.json()
    if status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
            f"expected the error shape, got {what}"
        )
        assert isinstance(body["error"].get("message"), str), f"error without message: {what}"
        if code is not None:
            assert body["error"].get("code") == code, f"expected code {code}, got {what}"
    if status == 429:
        retry = response.headers.get("retry-after", "")
        assert retry.isdigit(), f"429 without Retry-After seconds: {what}"
    problems = api.contract.check(response.request.method, response.request.url.path, response)
    assert not problems, f"answer disagrees with openapi.json: {problems}; {what}"
    return body


# --- outbox --------------------------------------------------------------------------------------


class OutboxSource(Protocol):
    """Where a deployment's outgoing messages can be read: each a dict with `to`, `channel`,
    `subject`, `body`, `code`, `purpose`."""

    def messages(self) -> list[dict[str, Any]]: ...


class JsonlOutbox:
    """The native host's local sink: one JSON object per line, appended."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def messages(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line still being written
        return out


class Outbox:
    """Waits for and filters messages of an `OutboxSource`."""

    def __init__(self, source: OutboxSource) -> None:
        self.source = source

    def find(self, to: str, purpose: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.source.messages()
            if m.get("to") == to and (purpose is None or m.get("purpose") == purpose)
        ]

    def wait(self, to: str, purpose: str | None = None, count: int = 1, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(to, purpose)
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) >= count, f"expected {count} {purpose} message(s) to {to}, got {found}"
        return found

    def code(self, to: str, purpose: str, nth: int = 1) -> str:
        message = self.wait(to, purpose, count=nth)[nth - 1]
        code = message.get("code")
        assert isinstance(code, str) and code, f"message without code: {message}"
        assert code in message.get("body", ""), f"code not in the message body: {message}"
        return code

    def settle(self, to: str, purpose: str | None = None, wait: float = 0.2) -> int:
        """Counts messages to `to` after giving an asynchronous sink time to write."""
        time.sleep(wait)
        return len(self.find(to, purpose))


# --- TOTP (RFC 6238 with SHA-1, 6 digits, 30 s) -------------------------------------------------


def hotp(secret: bytes, counter: int, digits: int = 6) -> str:
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def b32decode(secret: str) -> bytes:
    secret = secret.strip().replace(" ", "").upper()
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def totp(secret_b32: str, at: float | None = None, step: int | None = None) -> str:
    if step is None:
        step = int((time.time() if at is None else at) // 30)
    return hotp(b32decode(secret_b32), step)


class Authenticator:
    """An authenticator app that never shows the same time step twice.

    Codes come from the oldest step after the last one used within [now - 1, now + 1], the
    window every RFC 6238 verifier accepts for clock drift; when that window is used up it waits
    for the next step.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.last_step: int | None = None

    def code(self) -> str:
        while True:
            now = int(time.time() // 30)
            low = now - 1 if self.last_step is None else max(now - 1, self.last_step + 1)
            if low <= now + 1:
                # Stay off the far edges when the step is about to change.
                if low == now - 1 and time.time() % 30 > 25:
                    low = now
                self.last_step = low
                return totp(self.secret, step=low)
            time.sleep(30 - time.time() % 30 + 0.1)


# --- JWT pieces ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict, dict, bytes]:
    header, payload, signature = token.split(".")
    return (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(payload)),
        b64url_decode(signature),
    )


def jwt_encode(header: dict, payload: dict, sign: Callable[[bytes], bytes] | None) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode()
    signature = sign(signing_input) if sign else b""
    return f"{head}.{body}.{b64url(signature)}"


# --- accounts ------------------------------------------------------------------------------------

STRONG_PASSWORD = "Correct7Horse"

# Every secret any test handled (passwords, codes, tokens, TOTP seeds), for the log check.
SEEN_SECRETS: set[str] = set()


@dataclass
class Account:
    """A test account and what the suite learned about it."""

    api: Api
    email: str
    password: str
    channel: str = "email"
    phone: str | None = None
    id: str | None = None
    tokens: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    @property
    def to(self) -> str:
        return self.phone if self.channel == "sms" else self.email

    @property
    def access(self) -> str:
        return self.tokens["access_token"]

    @property
    def refresh(self) -> str:
        return self.tokens["refresh_token"]

    def remember(self, *values: str) -> None:
        """Keeps secrets that must never show up in the audit export or the server's log."""
        self.secrets.extend(v for v in values if v)
        SEEN_SECRETS.update(v for v in values if v)


class Accounts:
    """Creates fresh accounts through the public API."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def register(
        self,
        api: Api,
        *,
        email: str | None = None,
        password: str = STRONG_PASSWORD,
        channel: str = "email",
        phone: str | None = None,
    ) -> Account:
        if channel == "sms" and phone is None:
            phone = unique_phone()
        account = Account(api, email or unique_email(), password, channel, phone)
        body: dict[str, Any] = {
            "email": account.email,
            "password": password,
            "activation_channel": channel,
        }
        if phone is not None:
            body["phone"] = phone
        assert expect(api, api.post("/v1/accounts", body), 202) == {"status": "pending_activation"}
        account.remember(password)
        return account

    def activate(self, account: Account) -> None:
        code = self.outbox.code(account.to, "activation")
        account.remember(code)
        body = expect(
            account.api,
            account.api.post("/v1/accounts/activate", {"email": account.email, "code": code}),
            200,
        )
        assert body == {"status": "active"}

    def login(self, account: Account, api: Api | None = None) -> dict[str, Any]:
        api = api or account.api
        body = expect(
            api,
            api.post("/v1/auth/login", {"email": account.email, "password": account.password}),
            200,
        )
        assert "access_token" in body, f"expected a token pair, got {body}"
        account.tokens = body
        account.remember(body["access_token"], body["refresh_token"])
        return body

    def create(self, api: Api, *, login: bool = True, **kw: Any) -> Account:
        """A registered, activated and (by default) logged-in account."""
        account = self.register(api, **kw)
        self.activate(account)
        if login:
            self.login(account)
            me = expect(api, api.get("/v1/me", token=account.access), 200)
            account.id = me["id"]
        return account


# --- TOTP flows ---------------------------------------------------------------------------------


def enrol(api: Api, account: Account) -> dict:
    body = expect(api, api.post("/v1/me/totp", token=account.access), 200)
    account.remember(body["secret"])
    return body


def enable(api: Api, account: Account) -> tuple[Authenticator, list[str]]:
    """Turns TOTP on; answers the authenticator and the recovery codes."""
    secret = enrol(api, account)["secret"]
    app = Authenticator(secret)
    code = app.code()
    account.remember(code)
    body = expect(api, api.post("/v1/me/totp/confirm", {"code": code}, token=account.access), 200)
    account.remember(*body["recovery_codes"])
    return app, body["recovery_codes"]


def challenge(api: Api, account: Account) -> str:
    body = expect(
        api, api.post("/v1/auth/login", {"email": account.email, "password": account.password}), 200
    )
    assert body.get("mfa_required") is True, f"expected an MFA challenge, got {body}"
    assert "access_token" not in body and "refresh_token" not in body
    assert body["expires_in"] == 300
    account.remember(body["mfa_token"])
    return body["mfa_token"]


def mfa(api: Api, mfa_token: str, **proof: str):
    return api.post("/v1/auth/mfa", {"mfa_token": mfa_token, **proof})


def audit_export(api: Api, token: str, fmt: str | None = None) -> httpx.Response:
    params = {"format": fmt} if fmt is not None else None
    return api.get("/v1/me/audit", token=token, params=params)


def audit_records(api: Api, token: str) -> list[dict[str, Any]]:
    response = audit_export(api, token)
    expect(api, response, 200)
    ctype = response.headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/x-ndjson", describe(response)
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]
