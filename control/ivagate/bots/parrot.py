"""The ``parrot`` bot: the live audio API in one screen. It repeats what the caller says once
the caller pauses, stops talking the moment the caller talks over it (barge-in), and after
``turns`` repetitions, or once the caller has said nothing for ``idle`` seconds, sends the
final intent.

Options (``call.bot_options.parrot``): ``rate`` (8000 or 16000, default 16000), ``pause``
(seconds of quiet that end an utterance, 0.6), ``level`` (dBFS above which a frame is speech,
-40), ``turns`` (3), ``idle`` (5).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import AudioStream, Bot, Call

__all__ = ["ParrotBot"]


def level_dbfs(pcm: bytes) -> float:
    """The frame's RMS level in dB below full scale (silence: -inf)."""
    samples = array("h", pcm)
    power = sum(s * s for s in samples) / (len(samples) or 1)
    return 10 * math.log10(power / 32768**2) if power else -math.inf


class ParrotBot(Bot):
    name: ClassVar[str] = "parrot"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.rate = int(options.get("rate", 16000))
        self.pause = float(options.get("pause", 0.6))
        self.level = float(options.get("level", -40.0))
        self.turns = int(options.get("turns", 3))
        self.idle = float(options.get("idle", 5.0))

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        stream = await call.open_stream(self.rate)
        await call.send_update({"event": "listening"})
        turns = await self.repeat(call, stream)
        await stream.close()
        await call.finish({"intent": "Parrot", "turns": turns})

    async def repeat(self, call: Call, stream: AudioStream) -> int:
        """Listen and repeat until ``turns`` utterances were played back whole, or the
        caller stayed quiet for ``idle`` seconds; how many were."""
        utterance, quiet, turns = bytearray(), 0.0, 0
        reply = None  # the mark of what is being played back
        async for frame in stream:
            if level_dbfs(frame.pcm) > self.level:
                if reply is not None and not reply.done():
                    stream.clear()  # barge-in: the caller talks, the parrot stops at once
                    await call.send_update({"event": "barge-in"})
                utterance += frame.pcm
                quiet = 0.0
                continue
            quiet += 0.02
            if utterance and quiet >= self.pause:
                stream.play(bytes(utterance))
                reply = stream.mark(f"turn-{turns + 1}")
                utterance.clear()
            if reply is not None and reply.done():
                turns += reply.result()  # False: cut short by a barge-in
                reply = None
                if turns >= self.turns:
                    break
            if quiet >= self.idle and not stream.playing:
                break
        return turns
