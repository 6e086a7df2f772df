"""The ``websocket`` bot (issue 14) with a real Twilio-stream bot as its peer: a pipecat
pipeline (pipecat-ai, pinned in pyproject's test extras) with pipecat's own
``TwilioFrameSerializer`` and WebSocket server transport, no LLM or cloud service. The kit's
caller -> real edge -> real FreeSWITCH -> controller -> WebSocket -> pipecat, and back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from live_calls import call, record_of, until
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
from ivagate_kit.audio import tone, tone_power
from support.edge import Edge

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

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
    start_controller: Callable[..., Awaitable[Controller]],
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
