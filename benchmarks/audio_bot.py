"""The bot of ``benchmarks/audio.py``, alone in its module so that the controller process
under test imports nothing else of the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ivagate.bots.base import Bot, Call, CallEnded, Outcome, StreamClosed

__all__ = ["AudioBenchBot"]


class AudioBenchBot(Bot):
    """Answer, open a stream at ``rate`` (16000), echo every caller frame back with
    ``play()`` and send an update every ``update_every`` seconds (2) until the caller hangs up.

    Per frame it notes, in microseconds, the delay from the frame's arrival from FreeSWITCH
    (``received_at``) to the bot's iterator, and the arrival against the frame's media time
    (``received_at - timestamp``); and the last frame's media time. At hangup it appends
    them as one JSON line to the file ``results`` names: the figures stay in this process
    until the call is over."""

    name = "audio-bench"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.results = Path(options["results"])
        self.rate = int(options.get("rate", 16000))
        self.update_every = float(options.get("update_every", 2.0))
        self.delays: list[float] = []
        self.arrivals: list[float] = []
        self.media_time = 0.0  # the last frame's timestamp: the stream's length in media time

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        stream = await call.open_stream(self.rate)
        updates = asyncio.create_task(self.send_updates(call))
        try:
            async for frame in stream:
                now = time.monotonic()
                self.delays.append(now - frame.received_at)
                self.arrivals.append(frame.received_at - frame.timestamp)
                self.media_time = frame.timestamp
                stream.play(frame.pcm)
        except (CallEnded, StreamClosed):
            pass  # the caller hung up between the frame and its echo
        finally:
            updates.cancel()

    async def send_updates(self, call: Call) -> None:
        with contextlib.suppress(CallEnded):
            for n in itertools.count(1):
                await asyncio.sleep(self.update_every)
                await call.send_update({"n": n})

    async def on_hangup(self, call: Call, outcome: Outcome) -> None:
        first = min(self.arrivals, default=0.0)
        line = {
            "frames": len(self.delays),
            "media_s": self.media_time,
            "delay_us": [round(d * 1e6) for d in self.delays],
            # how much later than the stream's earliest frame, against media time
            "arrival_us": [round((a - first) * 1e6) for a in self.arrivals],
        }
        with self.results.open("a") as out:
            out.write(json.dumps(line) + "\n")
