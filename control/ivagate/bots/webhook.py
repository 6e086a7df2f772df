"""The built-in ``webhook`` bot: the call's flow is decided by an HTTP service.

The bot answers the call, then posts call *events* to the configured URL and carries out the
*actions* listed in each reply, until an action ends the call. Options: ``WebhookOptions``,
the ``call.bot_options.webhook`` entry (``IVAGATE_CALL__BOT_OPTIONS__WEBHOOK__URL``,
``__SECRET``, ...): every request is signed, so ``secret`` is required, and ``url`` must be
``https://`` unless ``allow_http`` is set.

Protocol, version 1
-------------------
Request: ``POST <url>``, ``Content-Type: application/json``, body::

    {"version": 1, "id": "<call uuid>:<seq>", "event": "start",
     "call": {"uuid": ..., "sip_call_id": ..., "did": ..., "caller": ...,
              "transport": "tls", "source": "ip:port", "srtp": true},
     "data": {...}}

``id`` is the same on every retry of one event (deduplicate on it); ``seq`` counts from 1.
Events and their ``data``:

* ``start``: ``{"headers": {"Name": ["value", ...]}}`` every INVITE header; the call is answered.
* ``dtmf``: ``{"digit": "5"}`` a digit pressed while no ``gather`` was running.
* ``gather``: ``{"digits": "57"}`` the result of a ``gather`` action (``""``: nothing in time).
* ``error``: ``{"action": {...}, "reason": "..."}`` an ``update`` or ``finish`` was refused
  (payload not JSON-serialisable, too large, or uses ``final``); the call goes on.
* ``hangup``: ``{"outcome": "Success" | "Failed" | "Disconnected"}``; the reply is ignored.

Each request is signed: ``X-Ivagate-Timestamp: <unix seconds>`` and
``X-Ivagate-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.

Reply: ``2xx`` with ``{"actions": [...]}`` (an empty body or ``204``: no actions). Actions run
in order:

* ``{"action": "play", "source": "tone_stream://%(200,0,800)"}`` a file or tone, to its end.
* ``{"action": "say", "text": "Hello"}`` TTS on the media node.
* ``{"action": "gather", "max_digits": 1, "timeout": 5, "prompt": null, "terminators": "#"}``
  collects DTMF, then posts a ``gather`` event; that reply's actions replace the rest.
* ``{"action": "update", "payload": {...}}`` a SIP INFO to RingCX (``final`` is reserved).
* ``{"action": "finish", "payload": {...}}`` the final intent; the flow is over.
* ``{"action": "hangup", "cause": "NORMAL_CLEARING"}`` BYE now; the flow is over.

When a reply's actions run out without ``finish``/``hangup``, the bot waits up to
``idle_timeout`` seconds for a DTMF digit (posted as ``dtmf``) and otherwise carries out the
fallback. Errors: a connection failure, a timeout or a ``5xx``/``408``/``429`` reply is retried
``retries`` times; after that, or at once for any other status or a reply that does not follow
this protocol (bad JSON, unknown action, unknown field), the bot carries out ``fallback``
(a ``finish`` or ``hangup`` action; default: finish with ``{"error": "webhook_unavailable"}``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ivagate import __version__
from ivagate.bots.base import Bot, Call, HangupCause, Outcome, PayloadError
from ivagate.bots.described import invite_headers, log_ids

__all__ = [
    "PROTOCOL_VERSION",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Action",
    "Reply",
    "WebhookBot",
    "WebhookOptions",
    "fall_back",
    "sign",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SIGNATURE_HEADER = "X-Ivagate-Signature"
TIMESTAMP_HEADER = "X-Ivagate-Timestamp"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_BACKOFF = 0.2  # seconds, times the attempt number: short, a caller is waiting

# Text that reaches an ESL command line: one line, no control characters.
Line = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]*$")]
# A file, tone or prompt: FreeSWITCH splits application arguments on spaces.
Word = Annotated[
    str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\s\x00-\x1f]+$")
]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Play(_Action):
    action: Literal["play"]
    source: Word


class Say(_Action):
    action: Literal["say"]
    text: Line


class Gather(_Action):
    action: Literal["gather"]
    max_digits: int = Field(1, ge=1, le=64)
    timeout: float = Field(5.0, gt=0, le=300)
    prompt: Word | None = None
    terminators: str = Field("#", pattern=r"^[0-9*#]*$")


class Update(_Action):
    action: Literal["update"]
    payload: dict[str, Any]


class Finish(_Action):
    action: Literal["finish"]
    payload: dict[str, Any] = Field(default_factory=dict)


class Hangup(_Action):
    action: Literal["hangup"]
    cause: HangupCause = "NORMAL_CLEARING"


Action = Annotated[Play | Say | Gather | Update | Finish | Hangup, Field(discriminator="action")]


class WebhookOptions(BaseModel):
    """The webhook bot's options: its ``call.bot_options.webhook`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl = Field(description="webhook bot: where it posts call events (https://)")
    secret: SecretStr = Field(
        min_length=1, description="webhook bot: HMAC-SHA256 key of X-Ivagate-Signature"
    )
    allow_http: bool = Field(
        False, description="webhook bot: accept an http:// url (a hook on a trusted network)"
    )
    timeout: float = Field(3.0, gt=0, description="webhook bot: seconds per request")
    retries: int = Field(2, ge=0, description="webhook bot: retries after a failed request")
    idle_timeout: float = Field(
        30.0,
        gt=0,
        description="webhook bot: seconds to wait for a digit when a reply ends the flow nowhere",
    )
    # a finish or hangup: checked with the options, not in the call that needs it
    fallback: Finish | Hangup = Field(
        Finish(action="finish", payload={"error": "webhook_unavailable"}),
        discriminator="action",
        description="webhook bot: action carried out when the webhook cannot be reached",
    )

    @field_validator("fallback", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        # a nested environment variable (IVAGATE_CALL__BOT_OPTIONS__WEBHOOK__FALLBACK) is text
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> Self:
        if self.url.scheme != "https" and not self.allow_http:
            raise ValueError(f"url {self.url} is not https:// (allow_http=true accepts http://)")
        return self


class Reply(BaseModel):
    """A webhook's answer to one event."""

    model_config = ConfigDict(extra="forbid")

    actions: list[Action] = Field(default_factory=list)


class _Event(BaseModel):
    """An event still to be posted: its name and data."""

    name: str
    data: dict[str, Any] = Field(default_factory=dict)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Ivagate-Signature`` value of ``body`` posted at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _WebhookUnavailable(Exception):
    """The webhook could not be reached or did not follow the protocol."""


class WebhookBot(Bot):
    """Runs each call as the webhook at ``WebhookOptions.url`` directs it."""

    name = "webhook"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.settings = WebhookOptions.model_validate(options)
        self.fallback = self.settings.fallback
        self._seq = 0
        self._dtmf: asyncio.Queue[str] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        WebhookOptions.model_validate(options)

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        event: _Event | None = _Event(name="start", data={"headers": invite_headers(call)})
        while event is not None:
            try:
                reply = await self._post(call, event, 1 + self.settings.retries)
            except _WebhookUnavailable as exc:
                await self._fall_back(call, "unavailable", str(exc))
                return
            event = await self._carry_out(call, reply.actions)

    async def on_dtmf(self, call: Call, digit: str) -> None:
        self._dtmf.put_nowait(digit)

    async def on_hangup(self, call: Call, outcome: Outcome) -> None:
        try:
            # One attempt: the call is over and nobody waits for the reply.
            await self._post(call, _Event(name="hangup", data={"outcome": str(outcome)}), 1)
        except _WebhookUnavailable as exc:
            log.warning("hangup event not delivered: %s", exc, extra=log_ids(call))
        finally:
            if self._session is not None:
                await self._session.close()

    async def _carry_out(self, call: Call, actions: list[Action]) -> _Event | None:
        """Run ``actions`` in order; return the next event to post, or None when the flow ended."""
        for action in actions:
            match action:
                case Play(source=source):
                    await call.play(source)
                case Say(text=text):
                    await call.say(text)
                case Gather():
                    digits = await call.collect_digits(
                        action.max_digits, action.timeout, action.prompt, action.terminators
                    )
                    return _Event(name="gather", data={"digits": digits})
                case Update(payload=payload):
                    try:
                        await call.send_update(payload)
                    except PayloadError as exc:
                        return _refused(call, action, exc)
                case Finish(payload=payload):
                    try:
                        await call.finish(payload)
                    except PayloadError as exc:
                        return _refused(call, action, exc)
                    return None
                case Hangup(cause=cause):
                    await call.hangup(cause)
                    return None
        return await self._next_caller_event(call)

    async def _next_caller_event(self, call: Call) -> _Event | None:
        """The caller's next digit as a ``dtmf`` event; the fallback after ``idle_timeout``."""
        try:
            digit = await asyncio.wait_for(self._dtmf.get(), self.settings.idle_timeout)
        except TimeoutError:
            idle = f"no finish or hangup after {self.settings.idle_timeout}s"
            await self._fall_back(call, "idle", idle)
            return None
        return _Event(name="dtmf", data={"digit": digit})

    async def _fall_back(self, call: Call, reason: str, detail: str) -> None:
        """The fallback, counted by ``reason``: ``unavailable`` (no usable reply after the
        retries) or ``idle`` (no finish or hangup within ``idle_timeout``)."""
        call.count_failure(reason)
        log.error("webhook fallback (%s): %s", self.fallback.action, detail, extra=log_ids(call))
        await fall_back(call, self.fallback)

    async def _post(self, call: Call, event: _Event, attempts: int) -> Reply:
        """POST ``event`` (up to ``attempts`` times) and parse the reply."""
        url = str(self.settings.url)
        body, headers = self._request(call, event)
        failure = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(RETRY_BACKOFF * attempt)
            try:
                async with self._client().post(url, data=body, headers=headers) as resp:
                    if resp.status in RETRY_STATUSES:
                        failure = f"HTTP {resp.status}"
                        continue
                    if not 200 <= resp.status < 300:
                        raise _WebhookUnavailable(f"HTTP {resp.status}")
                    text = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = repr(exc)
                continue
            try:
                return Reply.model_validate_json(text) if text.strip() else Reply()
            except ValidationError as exc:
                raise _WebhookUnavailable(f"reply breaks the protocol: {exc}") from exc
        raise _WebhookUnavailable(f"{attempts} attempt(s) failed, last: {failure}")

    def _request(self, call: Call, event: _Event) -> tuple[bytes, dict[str, str]]:
        """The next event's body and signed headers."""
        self._seq += 1
        envelope = {
            "version": PROTOCOL_VERSION,
            "id": f"{call.uuid}:{self._seq}",
            "event": event.name,
            "call": _summary(call),
            "data": event.data,
        }
        body = json.dumps(envelope).encode()
        timestamp = str(int(time.time()))
        key = self.settings.secret.get_secret_value().encode()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(key, timestamp, body),
        }
        return body, headers

    def _client(self) -> aiohttp.ClientSession:
        """The call's HTTP session (its connection is reused), made on first use."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                headers={"User-Agent": f"ivagate/{__version__}"},
            )
        return self._session


async def fall_back(call: Call, action: Finish | Hangup) -> None:
    """Carry out a built-in bot's fallback: ``finish`` with its payload (hang up if that is
    refused: reporting the refusal could loop on the broken service), or ``hangup``."""
    if isinstance(action, Hangup):
        await call.hangup(action.cause)
        return
    try:
        await call.finish(action.payload)
    except PayloadError as exc:
        log.error("fallback payload refused, hanging up: %s", exc, extra=log_ids(call))
        await call.hangup()


def _refused(call: Call, action: Update | Finish, exc: PayloadError) -> _Event:
    log.warning("%s refused: %s", action.action, exc, extra=log_ids(call))
    return _Event(name="error", data={"action": action.model_dump(), "reason": str(exc)})


def _summary(call: Call) -> dict[str, Any]:
    return {
        "uuid": call.uuid,
        "sip_call_id": call.sip_call_id,
        "did": call.did,
        "caller": call.caller,
        "transport": call.transport,
        "source": call.source,
        "srtp": call.srtp,
    }
