"""The built-in ``websocket`` bot: the call's audio and flow over a WebSocket, speaking the
Twilio Media Streams protocol (``media_streams.py``), so a bot written for Twilio's
``<Connect><Stream>`` runs unchanged, plus RingCX's commands (``update``, ``finish``,
``hangup``), each answered with a ``reply``.

Per call the bot answers, connects to ``url`` (``wss://`` unless ``allow_ws``; certificates
checked against the system's CAs or ``ca_file``), opens the call's stream in the format the
URL's ``ivagate_audio`` query parameter names (u-law 8 kHz by default) and relays: the
caller's 20 ms frames as ``media``, digits as ``dtmf``, the bot's ``media`` to the caller,
its ``mark`` echoed once the audio before it has played, ``clear`` (barge-in) echoing the
marks it dropped. When the call ends: ``stop``, then the socket is closed. When the bot
fails (connection refused, TLS, closed, a message that breaks the protocol, invalid
base64, over ``max_message_bytes``) the call gets the ``fallback`` (finish with an error
payload, or hangup), logged and counted in ``ivagate_bot_failures_total``; no reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

import aiohttp
from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ivagate import __version__

from . import media_streams as ms
from .base import AudioError, AudioStream, Bot, Call, CallEnded, PayloadError, StreamClosed
from .described import invite_headers, log_ids
from .webhook import Finish, Hangup, fall_back

__all__ = ["AUDIO_PARAMETER", "WebSocketBot", "WebSocketOptions", "sign_token", "verify_token"]

log = logging.getLogger(__name__)

AUDIO_PARAMETER = "ivagate_audio"  # the URL's query parameter naming the audio format
OUTBOX_FRAMES = 50  # a second of caller audio queued toward a slow bot; more is dropped
# digits pressed before the relay exists (the bot connecting: seconds), sent after start;
# bounded because after a fallback they keep coming, never sent (past it the oldest go)
EARLY_DIGITS = 32
CLOSE_TIMEOUT = 2.0  # seconds for the last replies and the closing handshake
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
HEADER_PREFIX = "header:"  # an INVITE header in start.customParameters: "header:X-Bot-Id"


def sign_token(secret: bytes, call_uuid: str, expires: int) -> str:
    """The token a call's connection carries: ``<expires>.<call uuid>.<hex HMAC-SHA256 of
    "<expires>.<call uuid>">``, valid until the unix time ``expires``."""
    claim = f"{expires}.{call_uuid}"
    return f"{claim}.{hmac.new(secret, claim.encode(), hashlib.sha256).hexdigest()}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> str | None:
    """The call uuid a valid, unexpired token was signed for; ``None`` otherwise."""
    expires, _, rest = token.partition(".")
    call_uuid, _, _ = rest.rpartition(".")
    if not expires.isdigit() or not hmac.compare_digest(
        token, sign_token(secret, call_uuid, int(expires))
    ):
        return None
    return call_uuid if int(expires) >= (time.time() if now is None else now) else None


class WebSocketOptions(BaseModel):
    """The websocket bot's options: its ``call.bot_options`` entry (one per bot name: list
    the class under several names in ``call.bots`` for a URL per DID)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: AnyUrl = Field(
        description="websocket bot: where each call connects (wss://); its query parameter "
        "ivagate_audio=l16-16000 asks for 16 kHz linear PCM instead of 8 kHz u-law"
    )
    allow_ws: bool = Field(
        False, description="websocket bot: accept a ws:// url (a bot on a trusted network)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="websocket bot: headers sent with the connection"
    )
    parameters: dict[str, str] = Field(
        default_factory=dict,
        description="websocket bot: added to start.customParameters (Twilio's <Parameter>)",
    )
    account_sid: str = Field(
        "ivagate", description="websocket bot: the accountSid of start and stop messages"
    )
    secret: SecretStr | None = Field(
        None, description="websocket bot: HMAC-SHA256 key of the connection's signed token"
    )
    token_query: str | None = Field(
        "token", description="websocket bot: query parameter carrying the token (or none)"
    )
    token_header: str | None = Field(
        None, description="websocket bot: header carrying the token (or none)"
    )
    token_ttl: int = Field(60, gt=0, description="websocket bot: seconds a token is valid")
    ca_file: FilePath | None = Field(
        None, description="websocket bot: CA certificates for wss:// (default: the system's)"
    )
    connect_timeout: float = Field(
        3.0, gt=0, description="websocket bot: seconds to connect (TCP, TLS and upgrade)"
    )
    max_message_bytes: int = Field(
        1 << 20, ge=1024, description="websocket bot: largest message taken from the bot"
    )
    fallback: Finish | Hangup = Field(
        Finish(action="finish", payload={"error": "websocket_unavailable"}),
        discriminator="action",
        description="websocket bot: action carried out when the bot fails",
    )

    @field_validator("headers", "parameters", "fallback", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        # nested environment variables (..._WEBSOCKET__FALLBACK) are text
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.url.scheme not in ("ws", "wss"):
            raise ValueError(f"url {self.url} is not ws:// or wss://")
        if self.url.scheme == "ws" and not self.allow_ws:
            raise ValueError(f"url {self.url} is not wss:// (allow_ws=true accepts ws://)")
        audio = self._audio()
        if audio not in ms.FORMATS:
            raise ValueError(f"{AUDIO_PARAMETER}={audio}: one of {sorted(ms.FORMATS)}")
        if self.secret is not None and not (self.token_query or self.token_header):
            raise ValueError("a secret needs token_query or token_header to carry the token")
        return self

    @property
    def media_format(self) -> ms.MediaFormat:
        return ms.FORMATS[self._audio()]

    def _audio(self) -> str:
        return parse_qs(self.url.query or "").get(AUDIO_PARAMETER, ["pcmu"])[-1]


class _BotFailed(Exception):
    """The bot's connection failed or it broke the protocol; ``reason`` labels the count."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class WebSocketBot(Bot):
    """Relays each call to the WebSocket bot at ``WebSocketOptions.url``."""

    name = "websocket"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.settings = WebSocketOptions.model_validate(options)
        self._relay: _Relay | None = None
        self._early: deque[str] = deque(maxlen=EARLY_DIGITS)  # until the relay exists

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        WebSocketOptions.model_validate(options)

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        fmt = self.settings.media_format
        try:
            async with aiohttp.ClientSession() as session:
                ws = await self._connect(session, call)
                async with ws:
                    try:
                        stream = await call.open_stream(fmt.rate, fmt.stream_encoding)
                    except StreamClosed as exc:
                        raise _BotFailed("stream", str(exc)) from exc
                    self._relay = _Relay(call, ws, stream, self.settings)
                    await self._relay.run(self._early)
        except _BotFailed as exc:
            await self._fall_back(call, exc)

    async def on_dtmf(self, call: Call, digit: str) -> None:
        if self._relay is None:
            self._early.append(digit)
        else:
            self._relay.dtmf(digit)

    async def _connect(
        self, session: aiohttp.ClientSession, call: Call
    ) -> aiohttp.ClientWebSocketResponse:
        settings = self.settings
        query, headers = {}, {"User-Agent": f"ivagate/{__version__}", **settings.headers}
        if settings.secret is not None:
            expires = int(time.time()) + settings.token_ttl
            token = sign_token(settings.secret.get_secret_value().encode(), call.uuid, expires)
            if settings.token_query:
                query[settings.token_query] = token
            if settings.token_header:
                headers[settings.token_header] = token
        tls: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            tls = ssl.create_default_context(cafile=Path(settings.ca_file))
        try:
            async with asyncio.timeout(settings.connect_timeout):
                return await session.ws_connect(
                    str(settings.url),
                    params=query,
                    headers=headers,
                    ssl=tls,
                    max_msg_size=settings.max_message_bytes,
                    timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
                )
        except aiohttp.ClientSSLError as exc:
            raise _BotFailed("tls", repr(exc)) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _BotFailed("connect", repr(exc)) from exc

    async def _fall_back(self, call: Call, failure: _BotFailed) -> None:
        call.count_failure(failure.reason)
        fallback = self.settings.fallback
        log.error("websocket bot failed (%s), %s", failure, fallback.action, extra=log_ids(call))
        with contextlib.suppress(CallEnded):  # the call ended meanwhile
            await fall_back(call, fallback)


class _Relay:
    """One call's connection: the caller's audio and digits to the bot, the bot's messages
    to the call. One writer task sends every message in ``sequenceNumber`` order; commands
    run one at a time in their own task, so audio keeps flowing while RingCX answers."""

    def __init__(
        self,
        call: Call,
        ws: aiohttp.ClientWebSocketResponse,
        stream: AudioStream,
        settings: WebSocketOptions,
    ) -> None:
        self.call = call
        self.ws = ws
        self.stream = stream
        self.settings = settings
        self.stream_sid = f"MZ{uuid.uuid4().hex}"  # Twilio's form: MZ and 32 hex digits
        self._seq = 0
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()  # None: close
        self._commands: asyncio.Queue[ms.Command] = asyncio.Queue()
        self._ending = False  # the bot asked for finish or hangup: its close is no failure
        self._refused_audio = False

    async def run(self, early_digits: Iterable[str]) -> None:
        """Relay until the stream ends (``stop``, then its error: ``CallEnded`` once the call
        is over), or raise ``_BotFailed``. ``early_digits``, pressed before the relay
        existed, follow ``start``."""
        self._outbox.put_nowait(json.dumps(CONNECTED))
        self._send("start", self._start())
        for digit in early_digits:  # before run's first await: no later digit comes first
            self.dtmf(digit)
        writer = asyncio.create_task(self._write())
        uplink = asyncio.create_task(self._uplink())
        downlink = asyncio.create_task(self._downlink())
        commands = asyncio.create_task(self._carry_out())
        tasks = (writer, uplink, downlink, commands)
        try:
            await asyncio.wait((uplink, downlink, commands), return_when=asyncio.FIRST_COMPLETED)
            if commands.done():
                commands.result()  # it never returns: this raises what broke it
            if not uplink.done():
                failure = downlink.exception()
                if not self._ending:
                    raise failure or _BotFailed("closed", "the bot's connection ended")
                await uplink  # the bot's finish or hangup is ending the call
            uplink.result()
            await self._stop(writer)
            # the stream ended: the call is over (CallEnded), the bot's flow with it; or
            # FreeSWITCH ended the leg alone and the call, without the bot's audio, falls back
            error = self.stream.error
            assert error is not None
            if isinstance(error, StreamClosed):
                raise _BotFailed("stream", str(error))
            raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(CallEnded, StreamClosed):
                await self.stream.close()

    def dtmf(self, digit: str) -> None:
        self._send("dtmf", {"track": "inbound_track", "digit": digit})

    def _start(self) -> dict[str, Any]:
        call = self.call
        parameters = {
            "did": call.did,
            "caller": call.caller,
            "transport": call.transport,
            "source": call.source,
            "srtp": str(call.srtp).lower(),
            "sipCallId": call.sip_call_id,
        }
        for name, values in invite_headers(call).items():
            parameters[f"{HEADER_PREFIX}{name}"] = ", ".join(values)
        return {
            "accountSid": self.settings.account_sid,
            "streamSid": self.stream_sid,
            "callSid": call.uuid,
            "tracks": ["inbound"],
            "mediaFormat": self.settings.media_format.as_json(),
            "customParameters": {**parameters, **self.settings.parameters},
        }

    def _send(self, event: str, body: dict[str, Any]) -> None:
        self._seq += 1
        message = {
            "event": event,
            "sequenceNumber": str(self._seq),
            event: body,
            "streamSid": self.stream_sid,
        }
        self._outbox.put_nowait(json.dumps(message))

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            await self.ws.send_str(text)

    async def _stop(self, writer: asyncio.Task[None]) -> None:
        """The call is over: the replies still due, ``stop``, the closing handshake."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._commands.join()
        self._send("stop", {"accountSid": self.settings.account_sid, "callSid": self.call.uuid})
        self._outbox.put_nowait(None)
        # each bounded: a bot that stopped reading holds the writer, then the close frame
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await writer
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close()  # cancelled, it drops the connection

    async def _uplink(self) -> None:
        """The caller's frames as ``media``; a bot that reads too slowly loses frames."""
        chunk = 0
        async for frame in self.stream:
            if self._outbox.qsize() >= OUTBOX_FRAMES:
                self.stream.frames_dropped += 1
                continue
            chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(round(frame.timestamp * 1000)),
                "payload": base64.b64encode(frame.pcm).decode(),
            }
            self._send("media", media)

    async def _downlink(self) -> None:
        """The bot's messages, until its connection ends (``_BotFailed``)."""
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self._take(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                raise _BotFailed("malformed", "a binary message")
            elif message.type is aiohttp.WSMsgType.ERROR:
                error = message.data  # the exception
                if getattr(error, "code", None) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                    raise _BotFailed("oversized", str(error))
                raise _BotFailed("closed", repr(error))
        raise _BotFailed("closed", f"the bot closed the connection (code {self.ws.close_code})")

    def _take(self, text: str) -> None:
        try:
            message = ms.parse(text)
        except ValidationError as exc:
            raise _BotFailed("malformed", _first_problem(exc)) from exc
        try:
            match message:
                case ms.Media(media=media):
                    self._play(media.payload)
                case ms.Mark(mark=mark):
                    done = self.stream.mark(mark.name)
                    done.add_done_callback(lambda played: self._played(mark.name, played))
                case ms.Clear():
                    for name in self.stream.clear():  # Twilio echoes the marks it drops
                        self._send("mark", {"name": name})
                case _:
                    self._ending |= isinstance(message, ms.Finish | ms.Hangup)
                    self._commands.put_nowait(message)
        except (CallEnded, StreamClosed):
            pass  # the call is ending: the uplink's end stops the relay

    def _play(self, payload: str) -> None:
        try:
            audio = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise _BotFailed("base64", f"media payload: {exc}") from exc
        try:
            self.stream.play(audio)
        except AudioError as exc:  # counted by the stream; this message is dropped
            if not self._refused_audio:  # once a call: a bot that overfills does it 50 times/s
                log.warning("bot audio refused: %s", exc, extra=log_ids(self.call))
            self._refused_audio = True

    def _played(self, name: str, played: asyncio.Future[bool]) -> None:
        if played.result():  # False: cleared (echoed then) or the stream ended
            self._send("mark", {"name": name})

    async def _carry_out(self) -> None:
        """The bot's RingCX commands, in order, each answered with a ``reply``."""
        while True:
            command = await self._commands.get()
            try:
                self._send("reply", await self._reply(command))
            finally:
                self._commands.task_done()

    async def _reply(self, command: ms.Command) -> dict[str, Any]:
        reply: dict[str, Any] = {"to": command.event, "id": command.id}
        try:
            match command:
                case ms.Update(payload=payload):
                    info = await self.call.send_update(payload)
                case ms.Finish(payload=payload):
                    info = await self.call.finish(payload)
                case ms.Hangup(cause=cause):
                    await self.call.hangup(cause)
                    return {**reply, "sent": True}
        except (PayloadError, CallEnded) as exc:
            self._ending &= isinstance(exc, CallEnded)  # a refused finish: the call goes on
            detail = "the call is over" if isinstance(exc, CallEnded) else str(exc)
            return {**reply, "sent": False, "error": type(exc).__name__, "detail": detail}
        return {
            **reply,
            "sent": True,
            "delivered": info.delivered,
            "result": info.result,
            "sip_status": info.sip_status,
            "reason": info.reason,
        }


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
