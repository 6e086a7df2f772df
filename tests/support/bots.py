"""Bots used by the controller tests, loaded by ``module:Class`` like a site's own bots."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import Mapping
from typing import Any, ClassVar

from ivagate.bots.base import AudioError, Bot, Call, CallEnded, Outcome, PayloadError
from ivagate.calls.session import CallSession
from ivagate_kit.audio import tone

__all__ = [
    "AudioSmoke",
    "BadAudio",
    "BargeIn",
    "Broken",
    "BrokenInit",
    "Collect",
    "Daydream",
    "FinishOnly",
    "Gated",
    "HangupMidStream",
    "LegLost",
    "Listen",
    "LongPlay",
    "Payloads",
    "Silent",
    "Slow",
    "StreamUntilHangup",
    "TwoUpdates",
    "UpdateAfterHangup",
]


ACK_WAIT = 10.0  # seconds: FreeSWITCH retransmits its 200 OK for 32 s, then hangs up


class Recording(Bot):
    """Keeps what happened to it on the class, for the test to read.

    Option ``wait_for_ack``: ``answer()`` returns only once FreeSWITCH has the caller's ACK.
    A real FreeSWITCH sends an INFO the moment it is asked, ACK or not; a caller that has not
    yet taken in the 200 OK answers it 481 "unknown dialog" and the INFO is lost. The kit's
    emulator does so when the event loop it shares with the controller is busy (seen under
    load: INFO received after the 200 OK but before the emulator resumed to build its
    dialog and ACK). FreeSWITCH copies the ACK's headers into the channel: ``sip_to_tag``,
    unset after the INVITE, is set by the ACK, which the caller sends once its dialog exists.
    """

    seen: ClassVar[list[Any]] = []

    async def answer(self, call: Call) -> None:
        await call.answer()
        if self.options.get("wait_for_ack"):
            await _acked(call)

    async def on_hangup(self, call: Call, outcome: Outcome) -> None:
        type(self).seen.append(("hangup", outcome))

    async def on_dtmf(self, call: Call, digit: str) -> None:
        type(self).seen.append(("dtmf", digit))


async def _acked(call: Call) -> None:
    """Return once FreeSWITCH has the caller's ACK, or the channel is gone (the next action
    then raises CallEnded)."""
    assert isinstance(call, CallSession)  # a bot under the controller: its ESL is at hand
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ACK_WAIT
    while loop.time() < deadline:
        reply = (await call.esl.api(f"uuid_getvar {call.uuid} sip_to_tag")).strip()
        if reply.startswith("-ERR") or reply not in ("", "_undef_"):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no ACK reached FreeSWITCH within {ACK_WAIT:g}s of the answer")


class TwoUpdates(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        await call.send_update({"n": 1})
        await call.send_update({"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'})
        await call.finish({"intent": "Sales"})


class LongPlay(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        try:
            await call.play("tone_stream://%(5000,0,440)")
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise


class UpdateAfterHangup(Recording):
    seen: ClassVar[list[Any]] = []
    hung_up: ClassVar[asyncio.Event]

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        type(self).seen.append(("answered", call.uuid))
        await type(self).hung_up.wait()
        try:
            await call.send_update({"late": True})
        except CallEnded as exc:
            type(self).seen.append(("CallEnded", str(exc)))


class Broken(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        raise RuntimeError("bot bug")


class BrokenInit(Recording):
    def __init__(self, options: Mapping[str, Any]) -> None:
        raise ValueError("bad bot options")


class Payloads(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        for bad in (
            {"x": object()},
            {"final": True},
            {"blob": "x" * 100_000},
            ["not", "a", "dict"],
        ):
            try:
                await call.send_update(bad)  # type: ignore[arg-type]
            except PayloadError as exc:
                type(self).seen.append(str(exc))
        await call.finish({"intent": "Done"})


class Daydream(Recording):
    """Answers, then waits on something of its own, not on the call."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            type(self).seen.append("cancelled")
            raise


class Silent(Recording):
    """Answers and returns without a final intent."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()


class FinishOnly(Recording):
    """Answers and sends the final intent at once."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        try:
            await call.finish({"intent": "Sales"})
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise


class Collect(Recording):
    """Collects one digit, sends it as the final intent."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        digit = await call.collect_digits(1, timeout=2)
        await call.finish({"digit": digit})


class Gated(Recording):
    """Answers, then sends its final intent once the test opens ``go`` (a fresh Event per test)."""

    seen: ClassVar[list[Any]] = []
    go: ClassVar[asyncio.Event]

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        type(self).seen.append(("answered", call.uuid))
        await type(self).go.wait()
        await call.finish({"intent": "Sales"})


class Slow(Recording):
    """Answers only after ``options["delay"]`` seconds (default 3): past a short deadline."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await asyncio.sleep(float(self.options.get("delay", 3)))
        try:
            await call.answer()
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise
        await call.finish({"intent": "Late"})


class AudioSmoke(Recording):
    """Opens a stream, speaks a tone up to a mark, reads up to a second of the caller,
    closes the stream and finishes."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        encoding = self.options.get("encoding", "l16")
        stream = await call.open_stream(int(self.options.get("rate", 16000)), encoding)
        seen = type(self).seen
        second = tone(1000, 1.0, -10, stream.rate).tobytes()
        stream.play(second if encoding == "l16" else b"\xff" * (len(second) // 2))
        seen.append(("mark", await stream.mark("tone")))
        sizes = set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                async for frame in stream:
                    sizes.add(len(frame.pcm))
                    if stream.frames_in == 50:
                        break
        seen.append(("frames", stream.frames_in, sizes))
        await stream.close()
        seen.append(("closed", stream.closed))
        await call.play("silence_stream://100")  # the call is back in park: apps run again
        seen.append(("played after close", True))
        await call.finish({"intent": "Heard"})


class StreamUntilHangup(Recording):
    """Holds a stream open until the call ends, then notes what an action on it raises."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        stream = await call.open_stream(8000)
        async for _ in stream:
            pass
        type(self).seen.append(("stream ended", stream.closed))
        try:
            stream.play(b"\0\0")
        except Exception as exc:
            type(self).seen.append(("play", type(exc).__name__))
            raise


class Listen(Recording):
    """Hears the caller for a second, then plays option ``reply`` (a mono 16-bit WAV at the
    stream's rate) up to a mark, and finishes."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        stream = await call.open_stream(int(self.options.get("rate", 16000)))
        seen = type(self).seen
        heard = bytearray()
        async for frame in stream:
            heard += frame.pcm
            if len(heard) >= stream.rate * 2:  # a second of 16-bit samples
                break
        seen.append(("heard", bytes(heard)))
        if reply := self.options.get("reply"):
            with wave.open(reply) as speech:
                stream.play(speech.readframes(speech.getnframes()))
            played = await stream.mark("reply")
            seen.append(("mark", played, time.time()))
        await stream.close()
        await call.finish({"intent": "Listened"})


class BargeIn(Recording):
    """Plays a long tone, clears it after a second, finishes a second later."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        stream = await call.open_stream(8000)
        stream.play(tone(1000, 5.0, -10, stream.rate).tobytes())
        mark = stream.mark("tone")
        await asyncio.sleep(1.0)
        cleared = stream.clear()
        type(self).seen.append(("cleared", cleared, time.time(), mark.result()))
        await asyncio.sleep(1.0)
        await stream.close()
        await call.finish({"intent": "Cleared"})


class BadAudio(Recording):
    """A bot that stops reading its stream for 1.5 s, then writes audio the stream cannot
    take, then finishes: the call must go on through all of it."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        stream = await call.open_stream(16000)
        await asyncio.sleep(1.5)  # the caller's frames pile up unread
        for bad in ({"pcm": b"\0" * 3}, {"pcm": b"\0" * 640, "rate": 8000}):
            try:
                stream.play(**bad)  # type: ignore[arg-type]
            except AudioError as refused:
                type(self).seen.append(("refused", refused.reason, str(refused)))
        type(self).seen.append(("dropped", stream.frames_dropped))
        await stream.close()
        await call.finish({"intent": "Survived"})


class HangupMidStream(Recording):
    """Speaks a long tone and hangs up half a second in: its own stream ends too."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await self.answer(call)
        stream = await call.open_stream(8000)
        try:
            stream.play(tone(1000, 5.0, -10, stream.rate).tobytes())
            await asyncio.sleep(0.5)
            await call.hangup()
        except CallEnded as ended:  # the test says what ended the call before the bot did
            type(self).seen.append(("ended early", str(ended), stream.error))
            raise
        # the frames it had not read yet, then the loop ends
        type(self).seen.append(("frames after hangup", len([f async for f in stream])))
        type(self).seen.append(("closed", stream.closed))


class LegLost(Recording):
    """Its stream's leg is hung up inside FreeSWITCH (as an operator's ``uuid_kill`` would)
    while the call goes on: the stream ends, then the bot plays a tone and finishes."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        assert isinstance(call, CallSession)  # a bot under the controller: its ESL is at hand
        await self.answer(call)
        stream = await call.open_stream(8000)
        await anext(stream)  # the leg is up and bridged
        leg = (await call.esl.api(f"uuid_getvar {call.uuid} signal_bond")).strip()
        assert await call.esl.api(f"uuid_kill {leg}") == "+OK\n", leg
        async for _ in stream:
            pass
        type(self).seen.append(("stream ended", type(stream.error).__name__))
        await call.play("tone_stream://%(300,0,440)")  # the call is back in park
        await call.finish({"intent": "LegLost"})
