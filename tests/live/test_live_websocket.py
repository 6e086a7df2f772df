"""The ``websocket`` bot (issue 14) through the real stack: the kit's caller -> real edge ->
real FreeSWITCH -> controller -> WebSocket -> a Twilio-stream bot, and back. The bot is a
pipecat pipeline (pipecat-ai, pinned in pyproject's test extras) with pipecat's own
``TwilioFrameSerializer`` and WebSocket server transport, no LLM or cloud service; or, for
the protocol's timing, ``support.ws_peer`` scripted by the test."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from live_calls import call
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.workers.runner import WorkerRunner

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit.audio import tone, tone_power, ulaw_encode
from ivagate_kit.report import CallReport
from support.controller import record_of
from support.edge import Edge
from support.polling import until
from support.ws_peer import WITHIN, PeerBot

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]
RATE = 8000  # the pipeline's rate: Twilio's, so pipecat resamples nothing
REPLY_HZ = 880


class TwilioSerializer(TwilioFrameSerializer):
    """pipecat's serializer, told the ``streamSid`` by the ``start`` message as pipecat's
    FastAPI helper (``parse_telephony_websocket``) does before it builds one; keeps the
    events it read, in order."""

    def __init__(self) -> None:
        super().__init__("", params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
        self.events: list[str] = []
        self.start: dict[str, Any] = {}
        self.replies: list[dict[str, Any]] = []

    async def deserialize(self, data: str | bytes) -> Frame | None:
        message = json.loads(data)
        self.events.append(message["event"])
        if message["event"] == "start":
            self.start = message["start"]
            self._stream_sid = message["start"]["streamSid"]
        elif message["event"] == "reply":
            self.replies.append(message["reply"])
        return await super().deserialize(data)


class ToneBot(FrameProcessor):
    """Hears a second of the caller, answers with a second of 880 Hz, then sends RingCX
    its final intent (an ivagate message, through pipecat's transport-message frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.heard = bytearray()
        self.answered = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            return
        if self.answered:
            return
        self.heard += frame.audio
        if len(self.heard) >= RATE * 2:  # a second of 16-bit samples
            self.answered = True
            reply = tone(REPLY_HZ, 1.0, -10, RATE).tobytes()
            await self.push_frame(OutputAudioRawFrame(reply, RATE, 1))
            finish = {"event": "finish", "id": "end", "payload": {"intent": "Toned"}}
            await self.push_frame(OutputTransportMessageFrame(message=finish))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PipecatPeer:
    """A pipecat pipeline serving one Twilio stream on loopback."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.serializer = TwilioSerializer()
        self.bot = ToneBot()
        self.transport = SingleClientWebsocketServerTransport(
            SingleClientWebsocketServerParams(
                serializer=self.serializer,
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
            ),
            host="127.0.0.1",
            port=self.port,
        )
        pipeline = Pipeline([self.transport.input(), self.bot, self.transport.output()])
        params = PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)
        self.worker = PipelineWorker(pipeline, params=params)

        @self.transport.event_handler("on_client_disconnected")  # type: ignore[misc]
        async def ended(transport: SingleClientWebsocketServerTransport, client: object) -> None:
            await self.worker.queue_frame(EndFrame())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/media"


@pytest.fixture
async def pipecat() -> AsyncIterator[PipecatPeer]:
    peer = PipecatPeer()
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(peer.worker)
    running = asyncio.create_task(runner.run())
    yield peer
    await runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_a_pipecat_twilio_bot_hears_the_caller_and_the_caller_hears_it(
    edge: Edge,
    start_controller: StartController,
    pipecat: PipecatPeer,
) -> None:
    """The caller's 440 Hz tone reaches the pipecat bot (Goertzel on what it decoded from
    Twilio's u-law), the bot's 880 Hz answer reaches the caller, and its ``finish`` message
    becomes the final intent RingCX answers: the call ends Success."""
    options = {"url": pipecat.url, "allow_ws": True}
    controller = await start_controller(
        call={"bot_options": {"websocket": options}}, routing={"default_bot": "websocket"}
    )
    report = await call(edge, "tls", play="tone:440:-6", tones=[440, REPLY_HZ])
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, report.render())
    assert [(i.final, i.reply) for i in record.infos] == [(True, "+OK Success")]

    samples = array("h", bytes(pipecat.bot.heard[: RATE * 2]))
    assert tone_power(samples, RATE, 440) > 0.8
    assert tone_power(samples, RATE, REPLY_HZ) < 0.05

    media = report.media
    assert media is not None and media.srtp
    assert media.tone_power[REPLY_HZ] > 0.8, report.render()
    assert media.heard_seconds > 0.8, report.render()

    events = pipecat.serializer.events
    await until(lambda: events[-1] == "stop", "the stream's stop reached pipecat")
    assert events[:2] == ["connected", "start"]
    assert set(events[2:-1]) <= {"media", "reply"} and "reply" in events
    assert events[-1] == "stop"
    (reply,) = pipecat.serializer.replies
    assert (reply["to"], reply["id"], reply["sent"]) == ("finish", "end", True)
    assert pipecat.serializer.start["callSid"] == record.uuid
    assert pipecat.serializer.start["mediaFormat"]["encoding"] == "audio/x-mulaw"


@pytest.fixture
async def peer() -> AsyncIterator[PeerBot]:
    async with PeerBot() as bot:
        yield bot


async def _routed_to(peer: PeerBot, start_controller: StartController) -> Controller:
    options = {"url": peer.url, "allow_ws": True}
    return await start_controller(
        call={"bot_options": {"websocket": options}}, routing={"default_bot": "websocket"}
    )


async def test_clear_silences_the_caller_within_100_ms_and_echoes_the_mark(
    edge: Edge, start_controller: StartController, peer: PeerBot
) -> None:
    """The bot sends 5 s of 1000 Hz and a mark, a second later ``clear``: the caller stops
    hearing it within 100 ms of the clear, and the mark comes back at once."""
    controller = await _routed_to(peer, start_controller)
    caller = asyncio.create_task(call(edge, "tls", tones=[1000]))
    assert [(await peer.next())["event"] for _ in range(2)] == ["connected", "start"]
    audio = ulaw_encode(tone(1000, 5.0, -10))
    await peer.send({"event": "media", "media": {"payload": base64.b64encode(audio).decode()}})
    await peer.send({"event": "mark", "mark": {"name": "tone"}})
    await asyncio.sleep(1.0)  # the caller hears a second of it
    cleared_at = time.time()
    await peer.send({"event": "clear"})
    echo = await peer.next("media")
    assert (echo["event"], echo["mark"]) == ("mark", {"name": "tone"})
    await asyncio.sleep(1.0)  # the caller hears silence
    await peer.send({"event": "finish", "payload": {"intent": "Cleared"}})
    assert (await peer.next("media"))["event"] == "reply"
    report: CallReport = await caller
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, report.render())
    media = report.media
    assert media is not None and media.tone_power[1000] > 0.8, report.render()
    last_heard = max(end for _, end in media.active_spans)
    assert cleared_at - 0.2 < last_heard <= cleared_at + 0.1, (media.active_spans, cleared_at)
    assert 0.8 < media.heard_seconds < 1.3


async def test_dtmf_reaches_the_bot_and_the_callers_hangup_sends_stop(
    edge: Edge, start_controller: StartController, peer: PeerBot
) -> None:
    """The caller presses 1 and 2 (RTP events) and hangs up after 3 s: the bot gets two
    ``dtmf`` messages, then ``stop``, then the socket closes; the call is Disconnected."""
    controller = await _routed_to(peer, start_controller)
    caller = asyncio.create_task(call(edge, "udp", dtmf="12", bye=3.0))
    messages = []
    while not messages or messages[-1]["event"] != "stop":
        messages.append(await peer.next("media"))
    assert [m["event"] for m in messages] == ["connected", "start", "dtmf", "dtmf", "stop"]
    assert [m["dtmf"] for m in messages[2:4]] == [
        {"track": "inbound_track", "digit": "1"},
        {"track": "inbound_track", "digit": "2"},
    ]
    async with asyncio.timeout(WITHIN):
        await peer.closed.wait()
    record = await record_of(controller, await caller)
    assert record.outcome is Outcome.DISCONNECTED, record
    assert messages[-1]["stop"]["callSid"] == record.uuid


async def test_16_khz_linear_pcm_both_ways_when_the_url_asks_for_it(
    edge: Edge, start_controller: StartController, peer: PeerBot
) -> None:
    """``ivagate_audio=l16-16000``: the bot hears the caller's 440 Hz tone as 16 kHz 16-bit
    PCM, and its 1000 Hz answer in the same format reaches the caller; the mark after it
    comes back once it played."""
    options = {"url": f"{peer.url}?ivagate_audio=l16-16000", "allow_ws": True}
    controller = await start_controller(
        call={"bot_options": {"websocket": options}}, routing={"default_bot": "websocket"}
    )
    caller = asyncio.create_task(call(edge, "tls", play="tone:440:-6", tones=[440, 1000]))
    assert (await peer.next())["event"] == "connected"
    start = await peer.next()
    assert start["start"]["mediaFormat"] == {
        "encoding": "audio/x-l16",
        "sampleRate": 16000,
        "channels": 1,
    }
    heard = bytearray()
    while len(heard) < 16000 * 2:  # a second
        heard += base64.b64decode((await peer.next())["media"]["payload"])
    samples = array("h", bytes(heard))
    assert tone_power(samples, 16000, 440) > 0.8
    answer = tone(1000, 1.0, -10, 16000).tobytes()
    sent_at = time.monotonic()
    await peer.send({"event": "media", "media": {"payload": base64.b64encode(answer).decode()}})
    await peer.send({"event": "mark", "mark": {"name": "answer"}})
    echo = await peer.next("media")
    assert (echo["event"], echo["mark"]) == ("mark", {"name": "answer"})
    assert time.monotonic() - sent_at >= 1.0  # not before its second of audio played
    await peer.send({"event": "finish", "payload": {"intent": "Wideband"}})
    record = await record_of(controller, await caller)
    assert record.outcome is Outcome.SUCCESS, record
    report = await caller
    assert report.media is not None and report.media.tone_power[1000] > 0.8, report.render()
