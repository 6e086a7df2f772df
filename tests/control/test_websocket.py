"""The ``websocket`` bot against a real aiohttp WebSocket server playing a Twilio-stream bot.

The call is a stand-in with a real ``AudioStream`` (no sockets: the test feeds it the caller's
frames and ticks its pacer), so every message the bot sees and every effect of the bot's
messages on the call is observable; the audio path itself is tested live (tests/live).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import ValidationError

from ivagate.bots import websocket
from ivagate.bots.base import CallEnded, PayloadError, StreamClosed
from ivagate.bots.websocket import WebSocketBot, WebSocketOptions, sign_token, verify_token
from ivagate.calls.records import InfoRecord
from ivagate.controller import Controller
from ivagate.media import AudioError, AudioStream
from ivagate.media.stream import MARK_TICKS
from ivagate_kit.esl_double import EslDouble
from ivagate_kit.tls import self_signed
from support.edge import free_port
from support.stand_in_call import StandInIdentity
from support.ws_peer import WITHIN, PeerBot

ULAW_FRAME = 160  # 20 ms of u-law at 8 kHz
SECRET = "s3cret"
FALLBACK = ("finish", {"error": "websocket_unavailable"})


class StreamCall(StandInIdentity):
    """A ``Call`` whose stream is a real ``AudioStream``; records what the bot asked of it."""

    info_max_bytes = 100

    def __init__(self) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self.failures: list[str] = []
        self.audio_errors: list[AudioError] = []
        self.stream: AudioStream | None = None
        self.streamed = asyncio.Event()
        self.headers = CIMultiDictProxy(
            CIMultiDict([("X-Bot-Id", "billing"), ("Via", "SIP/2.0/TLS a"), ("Via", "b")])
        )
        self.raw_headers: Mapping[str, str] = {}
        self._infos = 0
        self.over = False

    async def answer(self) -> None:
        self.actions.append(("answer",))

    async def open_stream(self, rate: int = 16000, encoding: str = "l16") -> AudioStream:
        self.actions.append(("open_stream", rate, encoding))

        async def closer() -> None:
            stream.end(StreamClosed("closed"))

        stream = AudioStream(
            rate,
            encoding,
            inbound_frames=25,
            max_buffered_seconds=1.0,
            on_error=self.audio_errors.append,
            closer=closer,
        )
        self.stream = stream
        self.streamed.set()
        return stream

    async def send_update(self, payload: Mapping[str, Any]) -> InfoRecord:
        return self._info(payload, final=False)

    async def finish(self, payload: Mapping[str, Any]) -> InfoRecord:
        info = self._info(payload, final=True)
        self.end()  # RingCX's BYE
        return info

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.actions.append(("hangup", cause))
        self.end()

    def count_failure(self, reason: str) -> None:
        self.failures.append(reason)

    def end(self) -> None:
        """The call is over (the caller hung up, or RingCX after the final intent)."""
        self.over = True
        if self.stream is not None:
            self.stream.end(CallEnded(self.uuid))

    def _info(self, payload: Mapping[str, Any], final: bool) -> InfoRecord:
        if self.over:
            raise CallEnded(self.uuid)
        if "final" in payload or len(json.dumps(payload)) > self.info_max_bytes:
            raise PayloadError("over 100 bytes, or 'final'")
        self.actions.append(("finish" if final else "update", dict(payload)))
        self._infos += 1
        return InfoRecord(
            seq=self._infos,
            final=final,
            size=10,
            handed_at=0.0,
            result="reply",
            sip_status=200,
            reason="OK",
        )


@pytest.fixture
async def peer() -> AsyncIterator[PeerBot]:
    async with PeerBot() as bot:
        yield bot


def options(url: str, **more: Any) -> dict[str, Any]:
    return {"url": url, "allow_ws": True, "secret": SECRET, **more}


class Running:
    """The bot's flow for one call, as a task, and the call."""

    def __init__(self, url: str, **more: Any) -> None:
        self.call = StreamCall()
        self.bot = WebSocketBot(options(url, **more))
        self.flow = asyncio.create_task(self.bot.on_call_start(self.call))

    @property
    def stream(self) -> AudioStream:
        assert self.call.stream is not None
        return self.call.stream

    async def done(self) -> BaseException | None:
        """What the bot's flow raised (``CallEnded`` once the call is over), or ``None``."""
        async with asyncio.timeout(WITHIN):
            await asyncio.wait([self.flow])
        return self.flow.exception()


async def started(peer: PeerBot, **more: Any) -> Running:
    """A call whose bot has read ``connected`` and ``start``."""
    running = Running(peer.url, **more)
    assert (await peer.next())["event"] == "connected"
    assert (await peer.next())["event"] == "start"
    await running.call.streamed.wait()
    return running


def media(audio: bytes) -> dict[str, Any]:
    return {"event": "media", "streamSid": "MZx", "media": {"payload": b64(audio)}}


async def sync(peer: PeerBot) -> None:
    """Return once the call took every message the peer sent before: an ``update``'s reply
    comes after them (the bot's messages are taken in order)."""
    await peer.send({"event": "update", "id": "sync", "payload": {}})
    reply = await peer.next()
    assert reply["reply"]["id"] == "sync", reply


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tick(stream: AudioStream, times: int = 1) -> list[bytes | None]:
    """The pacer's next ticks: what went out to the caller."""
    return [stream.next_frame() for _ in range(times)]


# -- Twilio's messages to the bot -----------------------------------------------------------


async def test_connected_then_start_with_twilio_fields_and_the_call_in_custom_parameters(
    peer: PeerBot,
) -> None:
    running = Running(peer.url, parameters={"tenant": "acme"})
    connected, start = await peer.next(), await peer.next()
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert set(start) == {"event", "sequenceNumber", "start", "streamSid"}
    assert start["event"] == "start"
    assert start["sequenceNumber"] == "1"
    body = start["start"]
    assert body["streamSid"] == start["streamSid"]
    assert start["streamSid"].startswith("MZ") and len(start["streamSid"]) == 34
    assert body["callSid"] == running.call.uuid
    assert body["accountSid"] == "ivagate"
    assert body["tracks"] == ["inbound"]
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert body["customParameters"] == {
        "did": "15550001000",
        "caller": "+16505550100",
        "transport": "tls",
        "source": "192.0.2.10:5061",
        "srtp": "true",
        "sipCallId": "abc123@10.0.0.1",
        "header:X-Bot-Id": "billing",
        "header:Via": "SIP/2.0/TLS a, b",
        "tenant": "acme",
    }
    assert running.call.actions == [("answer",), ("open_stream", 8000, "pcmu")]
    running.call.end()
    await running.done()


async def test_the_connection_carries_a_signed_token_and_the_operators_headers(
    peer: PeerBot,
) -> None:
    url = f"{peer.url}?site=east"
    running = Running(url, headers={"X-Site": "east"}, token_header="X-Ivagate-Token")
    await peer.next()
    (request,) = peer.requests
    token = request.query["token"]
    assert request.query["site"] == "east"
    assert request.headers["X-Site"] == "east"
    assert request.headers["X-Ivagate-Token"] == token
    assert verify_token(SECRET.encode(), token) == running.call.uuid
    assert verify_token(b"other", token) is None
    expires = int(token.split(".")[0])
    assert verify_token(SECRET.encode(), token, now=expires + 1) is None
    forged = sign_token(b"other", running.call.uuid, expires)
    assert verify_token(SECRET.encode(), forged) is None
    running.call.end()
    await running.done()


async def test_caller_frames_become_media_messages_numbered_in_order(peer: PeerBot) -> None:
    running = await started(peer)
    frames = [bytes([n]) * ULAW_FRAME for n in range(3)]
    for n, frame in enumerate(frames):
        running.stream.received(frame, n * 0.02, 0.0)
    got = [await peer.next() for _ in frames]
    assert [m["sequenceNumber"] for m in got] == ["2", "3", "4"]
    assert [m["media"] for m in got] == [
        {"track": "inbound", "chunk": str(n + 1), "timestamp": str(n * 20), "payload": b64(f)}
        for n, f in enumerate(frames)
    ]
    assert {m["streamSid"] for m in got} == {running.bot._relay.stream_sid}  # type: ignore[union-attr]
    running.call.end()
    await running.done()


async def test_dtmf_reaches_the_bot_as_a_dtmf_message(peer: PeerBot) -> None:
    running = await started(peer)
    await running.bot.on_dtmf(running.call, "5")
    message = await peer.next()
    assert message["event"] == "dtmf"
    assert message["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert message["sequenceNumber"] == "2"
    running.call.end()
    await running.done()


async def test_digits_pressed_while_the_bot_connects_follow_start_in_order(
    peer: PeerBot,
) -> None:
    peer.accepting.clear()  # the call is answered, its connection waits: no relay yet
    running = Running(peer.url)
    async with asyncio.timeout(WITHIN):
        await peer.requested.wait()
    assert running.call.actions == [("answer",)]
    for digit in "12":
        await running.bot.on_dtmf(running.call, digit)
    peer.accepting.set()
    assert (await peer.next())["event"] == "connected"
    got = [await peer.next() for _ in range(3)]
    await running.bot.on_dtmf(running.call, "3")  # pressed once the bot is connected
    got.append(await peer.next())
    assert [(m["event"], m["sequenceNumber"]) for m in got] == [
        ("start", "1"),
        ("dtmf", "2"),
        ("dtmf", "3"),
        ("dtmf", "4"),
    ]
    assert [m["dtmf"]["digit"] for m in got[1:]] == ["1", "2", "3"]
    running.call.end()
    await running.done()


async def test_call_end_sends_stop_then_closes_the_connection(peer: PeerBot) -> None:
    running = await started(peer)
    running.call.end()  # the caller hangs up
    stop = await peer.next()
    assert stop["event"] == "stop"
    assert stop["stop"] == {"accountSid": "ivagate", "callSid": running.call.uuid}
    assert stop["sequenceNumber"] == "2"
    async with asyncio.timeout(WITHIN):
        await peer.closed.wait()
    assert isinstance(await running.done(), CallEnded)  # the flow ends with the call
    assert running.call.failures == []
    assert running.call.actions == [("answer",), ("open_stream", 8000, "pcmu")]


# -- the bot's audio: media, mark, clear -------------------------------------------------


async def test_bot_media_is_played_and_its_mark_echoes_after_the_audio_played(
    peer: PeerBot,
) -> None:
    running = await started(peer)
    audio = bytes(range(ULAW_FRAME)) + b"\x7f" * ULAW_FRAME
    await peer.send(media(audio))
    await peer.send({"event": "mark", "streamSid": "MZx", "mark": {"name": "greeting"}})
    await peer.send(media(b"\x01" * ULAW_FRAME))  # after the mark: does not hold it back
    await sync(peer)
    first, second = tick(running.stream, 2)
    assert first + second == audio  # type: ignore[operator]
    tick(running.stream, MARK_TICKS - 1)
    await sync(peer)  # nothing before the reply: the mark's last frame is still playing
    tick(running.stream)  # the mark resolves: its last frame has played
    mark = await peer.next()
    assert mark["event"] == "mark"
    assert mark["mark"] == {"name": "greeting"}
    assert mark["sequenceNumber"] == "4"  # after the two replies
    running.call.end()
    await running.done()


async def test_clear_drops_the_queued_audio_at_once_and_echoes_the_pending_marks(
    peer: PeerBot,
) -> None:
    running = await started(peer)
    await peer.send(media(b"\x05" * ULAW_FRAME * 10))
    await peer.send({"event": "mark", "mark": {"name": "a"}})
    await peer.send(media(b"\x06" * ULAW_FRAME * 10))
    await peer.send({"event": "mark", "mark": {"name": "b"}})
    await peer.send({"event": "clear", "streamSid": "MZx"})
    echoes = [await peer.next(), await peer.next()]
    assert [(m["event"], m["mark"]) for m in echoes] == [
        ("mark", {"name": "a"}),
        ("mark", {"name": "b"}),
    ]
    assert not running.stream.playing
    assert tick(running.stream, 2) == [None, None]
    running.call.end()
    assert (await peer.next())["event"] == "stop"  # no second echo of a cleared mark
    await running.done()


async def test_audio_the_stream_refuses_is_dropped_and_the_call_goes_on(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send(media(b"\x05" * ULAW_FRAME * 51))  # over the 1 s the stream buffers
    await peer.send(media(b"\x05" * ULAW_FRAME))
    await sync(peer)
    assert running.stream.playing
    assert [e.reason for e in running.call.audio_errors] == ["overflow"]
    assert running.call.failures == []
    running.call.end()
    await running.done()


async def test_16_khz_linear_pcm_when_the_url_asks_for_it(peer: PeerBot) -> None:
    running = Running(f"{peer.url}?ivagate_audio=l16-16000")
    await peer.next()
    start = await peer.next()
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-l16",
        "sampleRate": 16000,
        "channels": 1,
    }
    assert running.call.actions[-1] == ("open_stream", 16000, "l16")
    (request,) = peer.requests
    assert request.query["ivagate_audio"] == "l16-16000"
    pcm = (1000).to_bytes(2, "little", signed=True) * 320
    running.stream.received(pcm, 0.0, 0.0)
    assert base64.b64decode((await peer.next())["media"]["payload"]) == pcm
    running.call.end()
    await running.done()


# -- RingCX's commands -------------------------------------------------------------------


async def test_update_is_sent_and_answered_with_ringcxs_answer(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send({"event": "update", "id": "u1", "payload": {"step": "menu"}})
    await peer.send({"event": "update", "id": 2, "payload": {"final": False}})
    sent, refused = await peer.next(), await peer.next()
    assert sent["event"] == "reply"
    assert sent["reply"] == {
        "to": "update",
        "id": "u1",
        "sent": True,
        "delivered": True,
        "result": "reply",
        "sip_status": 200,
        "reason": "OK",
    }
    assert refused["reply"] == {
        "to": "update",
        "id": 2,
        "sent": False,
        "error": "PayloadError",
        "detail": "over 100 bytes, or 'final'",
    }
    assert [m["sequenceNumber"] for m in (sent, refused)] == ["2", "3"]
    assert running.call.actions[-1] == ("update", {"step": "menu"})
    running.call.end()
    await running.done()


async def test_finish_is_answered_before_stop_and_the_call_ends(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send({"event": "finish", "payload": {"intent": "Billing"}})
    reply, stop = await peer.next(), await peer.next()
    assert reply["reply"]["to"] == "finish"
    assert (reply["reply"]["sent"], reply["reply"]["delivered"]) == (True, True)
    assert stop["event"] == "stop"
    await running.done()
    assert running.call.actions[-1] == ("finish", {"intent": "Billing"})
    assert running.call.failures == []


async def test_a_refused_finish_leaves_the_call_going(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send({"event": "finish", "payload": {"note": "x" * 200}})
    reply = await peer.next()
    assert (reply["reply"]["sent"], reply["reply"]["error"]) == (False, "PayloadError")
    running.stream.received(b"\xff" * ULAW_FRAME, 0.0, 0.0)
    assert (await peer.next())["event"] == "media"
    running.call.end()
    await running.done()


async def test_hangup_is_answered_and_ends_the_call(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send({"event": "hangup", "cause": "USER_BUSY"})
    reply, stop = await peer.next(), await peer.next()
    assert reply["reply"] == {"to": "hangup", "id": None, "sent": True}
    assert stop["event"] == "stop"
    await running.done()
    assert running.call.actions[-1] == ("hangup", "USER_BUSY")


async def test_a_bot_that_finishes_then_closes_gets_no_fallback(peer: PeerBot) -> None:
    running = await started(peer)
    await peer.send({"event": "finish", "payload": {"intent": "Done"}})
    assert peer.socket is not None
    await peer.socket.close()
    await running.done()
    assert running.call.actions[-1] == ("finish", {"intent": "Done"})
    assert running.call.failures == []


# -- failures: the fallback, counted -----------------------------------------------------


@pytest.fixture
def unreachable_url() -> str:
    """A loopback URL nothing listens on (a free port)."""
    return f"ws://127.0.0.1:{free_port()}/bot"


async def test_unreachable_url_gets_the_fallback(unreachable_url: str) -> None:
    running = Running(unreachable_url)
    assert await running.done() is None  # the fallback ended the flow
    assert running.call.actions == [("answer",), FALLBACK]
    assert running.call.failures == ["connect"]


async def test_a_hangup_fallback_hangs_up(unreachable_url: str) -> None:
    running = Running(unreachable_url, fallback='{"action": "hangup", "cause": "CALL_REJECTED"}')
    assert await running.done() is None  # the fallback ended the flow
    assert running.call.actions == [("answer",), ("hangup", "CALL_REJECTED")]


@pytest.fixture
async def tls_peer(tmp_path: Path) -> AsyncIterator[tuple[PeerBot, str]]:
    """A wss:// bot with a self-signed certificate; its certificate file."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with PeerBot(context) as bot:
        yield bot, cert


async def test_wss_checks_the_certificate_against_the_given_ca(
    tls_peer: tuple[PeerBot, str],
) -> None:
    peer, cert = tls_peer
    assert peer.url.startswith("wss://")
    untrusted = Running(peer.url)
    assert await untrusted.done() is None
    assert untrusted.call.failures == ["tls"]
    assert untrusted.call.actions[-1] == FALLBACK

    trusted = Running(peer.url, ca_file=cert)
    assert (await peer.next())["event"] == "connected"
    await trusted.call.streamed.wait()
    trusted.call.end()
    await trusted.done()
    assert trusted.call.failures == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "malformed"),
        (json.dumps({"event": "media", "media": {}}), "malformed"),
        (json.dumps({"event": "dance"}), "malformed"),
        (b"\x00\x01", "malformed"),
        (json.dumps(media(b"")).replace('""', '"not base64!"'), "base64"),
        (json.dumps(media(b"\xff" * 1024)), "oversized"),
    ],
    ids=["json", "shape", "event", "binary", "base64", "oversized"],
)
async def test_a_message_that_breaks_the_protocol_gets_the_fallback(
    peer: PeerBot, message: str | bytes, reason: str
) -> None:
    running = await started(peer, max_message_bytes=1024)
    await peer.send(message)
    assert await running.done() is None  # the fallback ended the flow
    assert running.call.failures == [reason]
    assert running.call.actions[-1] == FALLBACK
    assert running.stream.closed
    async with asyncio.timeout(WITHIN):
        await peer.closed.wait()


async def test_the_bot_closing_mid_call_gets_the_fallback(peer: PeerBot) -> None:
    running = await started(peer)
    assert peer.socket is not None
    await peer.socket.close()
    assert await running.done() is None  # the fallback ended the flow
    assert running.call.failures == ["closed"]
    assert running.call.actions[-1] == FALLBACK


async def test_a_stream_freeswitch_ended_while_the_call_goes_on_gets_the_fallback(
    peer: PeerBot,
) -> None:
    """The stream's leg ended inside FreeSWITCH, the call still up: the bot is told
    ``stop`` and the call falls back, counted as a ``stream`` failure."""
    running = await started(peer)
    running.stream.end(StreamClosed("FreeSWITCH ended the stream's leg"))
    assert await running.done() is None  # the fallback ended the flow
    assert (await peer.next("media"))["event"] == "stop"
    assert running.call.failures == ["stream"]
    assert running.call.actions[-1] == FALLBACK


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"url": "ws://bot.example/s"}, "allow_ws"),
        ({"url": "https://bot.example/s"}, "not ws:// or wss://"),
        ({"url": "wss://bot.example/s?ivagate_audio=opus"}, "ivagate_audio=opus"),
        ({"url": "wss://b.example", "secret": "k", "token_query": None}, "token_query"),
        ({"url": "wss://b.example", "fallback": {"action": "play"}}, "fallback"),
    ],
)
def test_options_are_refused_with_the_reason(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        WebSocketBot.check_options(given)


def test_options_take_wss_with_defaults() -> None:
    settings = WebSocketOptions.model_validate({"url": "wss://bot.example/stream"})
    assert settings.media_format.stream_encoding == "pcmu"
    assert settings.fallback.action == "finish"


# -- through the controller -------------------------------------------------------------


async def test_a_did_routed_to_its_own_websocket_bot_counts_its_failure_in_metrics(
    unreachable_url: str, double: EslDouble, controller_on: Callable[..., Awaitable[Controller]]
) -> None:
    """A URL per DID: the class listed again as ``sales`` with its own options, the DID
    routed to it. Through the controller on the ESL double, its unreachable bot's call is
    finished with the fallback payload, counted in ``ivagate_bot_failures_total``."""
    fallback = {"action": "finish", "payload": {"error": "sales_down"}}
    controller = await controller_on(
        call={
            "bots": {"sales": "ivagate.bots.websocket:WebSocketBot"},
            "bot_options": {"sales": options(unreachable_url, fallback=fallback)},
        },
        routing={"dids": {"15550002000": "sales"}},
    )
    uuid = await double.park(did="15550002000")
    channel = double.channels[uuid]
    await double.wait_for(lambda: len(channel.infos) == 1)
    assert channel.infos == [{"error": "sales_down", "final": True}]
    counted = controller.metrics.registry.get_sample_value(
        "ivagate_bot_failures_total", {"bot": "sales", "reason": "connect"}
    )
    assert counted == 1.0


async def test_a_bot_that_stops_reading_loses_caller_frames_not_the_call(
    peer: PeerBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot reads nothing more: once the socket's buffers and a second of messages are
    full, caller frames are dropped and counted; the call goes on, and its end is not held
    up by the stuck bot longer than the close timeouts."""
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT", 0.2)
    running = await started(peer)
    assert peer.socket is not None
    peer.reading.clear()  # the peer's handler stops reading
    frame = b"\xff" * ULAW_FRAME
    sent = 0
    while running.stream.frames_dropped == 0 and sent < 200_000:
        running.stream.received(frame, sent * 0.02, 0.0)
        sent += 1
        await asyncio.sleep(0)
    assert running.stream.frames_dropped > 0
    assert running.call.failures == []
    running.call.end()  # the relay ends within its close timeouts, stuck bot or not
    assert isinstance(await running.done(), CallEnded)
    peer.reading.set()
