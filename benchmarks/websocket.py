"""The websocket bot's WebSocket hop: N concurrent calls relayed to a local echo bot.

The controller's side runs in this process on core 1: per call the real ``WebSocketBot``
(its connection, its relay) on an ``AudioStream`` that a driver feeds a caller frame and
drains a bot frame every 20 ms, as the RTP leg and the pacer do, calls spread over the tick.
The bot is an aiohttp server in a child process on core 0 that sends every ``media``
straight back. What lies below the stream
(FreeSWITCH, RTP) is not in it: the media benchmark of issue 13 measures that.

Figures per step of N streams: the controller's CPU (``streams per core`` = N / its share of
a core), caller frames lost (sent into a stream, never back from the bot), and the added delay
of the hop there and back (from a caller frame entering its stream to its echo queued for the
caller), p50/p99. Targets (issue 14): 200 streams per core with 0 lost, p99 < 5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import psutil
import uvloop
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from ivagate.bots.websocket import WebSocketBot
from ivagate.media import AudioError, AudioStream, StreamClosed

from .cores import started_on
from .measure import CpuMeter, percentile

BOT_CORE, CONTROLLER_CORE = 0, 1
STEPS = (100, 200, 300, 400)
WARM_UP, MEASURE, DRAIN = 2.0, 8.0, 1.0  # seconds
FRAME = 160  # 20 ms of u-law
# Calls' frames arrive at their own phase of the 20 ms (RTP from FreeSWITCH is not in step
# across calls): the streams are fed in this many groups, one per slot of the tick.
SLOTS = 10
TARGET_PER_CORE, TARGET_P99 = 200, 0.005


class TimedStream(AudioStream):
    """A stream that notes when each caller frame went in and when its echo came back (the
    frame's number is in its first four bytes)."""

    def __init__(self, sent: dict[int, float], delays: list[float]) -> None:
        async def closer() -> None:
            self.end(StreamClosed("closed"))

        super().__init__(
            8000,
            "pcmu",
            inbound_frames=25,
            max_buffered_seconds=2.0,
            on_error=self._error,
            closer=closer,
        )
        self.sent = sent
        self.delays = delays
        self.errors = 0

    def play(self, pcm: bytes, rate: int | None = None) -> None:
        entered = self.sent.pop(int.from_bytes(pcm[:4]), None)
        if entered is not None:  # a frame of the measured window
            self.delays.append(time.perf_counter() - entered)
        super().play(pcm, rate)

    def _error(self, error: AudioError) -> None:
        self.errors += 1


class BenchCall:
    """What the websocket bot needs of a call: an answer and a stream."""

    sip_call_id = did = caller = source = "bench"
    transport = "tcp"
    srtp = False
    raw_headers: Mapping[str, str] = {}

    def __init__(self, n: int, stream: TimedStream) -> None:
        self.uuid = f"bench-{n}"
        self.headers = CIMultiDictProxy(CIMultiDict())
        self.stream = stream
        self.failures: list[str] = []
        self.streaming = asyncio.Event()

    async def answer(self) -> None:
        return None

    async def open_stream(self, rate: int, encoding: str) -> AudioStream:
        self.streaming.set()  # after the connection, before the relay's first message
        return self.stream

    def count_failure(self, reason: str) -> None:
        self.failures.append(reason)

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.stream.end(StreamClosed("hung up"))


async def run_step(port: int, n: int, bot: psutil.Process) -> dict[str, Any]:
    """N calls for WARM_UP + MEASURE seconds of caller audio, then DRAIN for the last echoes;
    frames of the MEASURE window are timed and counted."""
    sent: dict[int, float] = {}  # measured frame number -> when it entered its stream
    delays: list[float] = []
    calls = [BenchCall(i, TimedStream(sent, delays)) for i in range(n)]
    url = f"ws://127.0.0.1:{port}/echo"
    bots = [WebSocketBot({"url": url, "allow_ws": True}) for _ in calls]
    flows = [asyncio.create_task(b.on_call_start(c)) for b, c in zip(bots, calls, strict=True)]
    loop, me = asyncio.get_running_loop(), psutil.Process()
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.streaming.wait() for c in calls))  # every call connected
    start = loop.time()
    measure_from, measure_to = start + WARM_UP, start + WARM_UP + MEASURE
    meter: CpuMeter | None = None
    cpu: dict[str, float] = {}
    number = fed = slot = 0
    while (now := loop.time()) < measure_to + DRAIN:
        measuring = measure_from <= now < measure_to
        if measuring and meter is None:
            meter = CpuMeter({"relays": me, "bot": bot})
        if now >= measure_to and meter is not None and not cpu:
            cpu = meter.read()
        tick, phase = divmod(slot, SLOTS)
        for call in calls[phase::SLOTS]:
            if now < measure_to:
                number += 1
                if measuring:
                    sent[number] = time.perf_counter()
                    fed += 1
                frame = number.to_bytes(4) + b"\xff" * (FRAME - 4)
                call.stream.received(frame, tick * 0.02, now)
            call.stream.next_frame()
        slot += 1
        await asyncio.sleep(max(0.0, start + slot * 0.02 / SLOTS - loop.time()))
    for call in calls:
        call.stream.end(StreamClosed("benchmark over"))
    await asyncio.gather(*flows, return_exceptions=True)
    return {
        "cpu": cpu["relays"],
        "wait": cpu["relays wait"],
        "bot_cpu": cpu["bot"],
        "fed": fed,
        "lost": len(sent),
        "dropped": sum(c.stream.frames_dropped for c in calls),
        "errors": sum(c.stream.errors for c in calls),
        "failures": sorted({f for c in calls for f in c.failures}),
        "p50": percentile(delays, 50) if len(delays) > 1 else math.nan,
        "p99": percentile(delays, 99) if len(delays) > 1 else math.nan,
    }


async def echo(request: web.Request) -> web.WebSocketResponse:
    """The bot: every ``media`` goes straight back."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            data = json.loads(message.data)
            if data["event"] == "media":
                back = {"event": "media", "media": {"payload": data["media"]["payload"]}}
                await ws.send_str(json.dumps(back))
    return ws


def serve_echo(port: int) -> None:
    app = web.Application()
    app.router.add_get("/echo", echo)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _listening(port: int) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the echo bot did not start")


async def run(port: int, bot: psutil.Process) -> int:
    await _listening(port)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} before the run")
    best = 0
    p99_at_target = float("nan")
    print(
        f"{'streams':>8} {'cpu':>6} {'per core':>9} {'lost':>5} {'dropped':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'bot cpu':>8} {'waited':>7}"
    )
    for n in STEPS:
        r = await run_step(port, n, bot)
        per_core = n / r["cpu"] if r["cpu"] else float("inf")
        print(
            f"{n:>8} {r['cpu']:>6.1%} {per_core:>9.0f} {r['lost']:>5} {r['dropped']:>8} "
            f"{r['p50'] * 1000:>7.2f} {r['p99'] * 1000:>7.2f} {r['bot_cpu']:>8.1%} "
            f"{r['wait']:>7.1%}"
            + (f"  audio errors {r['errors']}" if r["errors"] else "")
            + (f"  failures {r['failures']}" if r["failures"] else "")
        )
        clean = not (r["lost"] or r["dropped"] or r["errors"] or r["failures"])
        if clean and r["cpu"] < 1.0:
            best = max(best, int(per_core))
            if n == TARGET_PER_CORE:
                p99_at_target = r["p99"]
        await asyncio.sleep(1.0)
    ok_rate = best >= TARGET_PER_CORE
    ok_delay = p99_at_target < TARGET_P99
    print(
        f"streams per core with 0 lost: {best} ({'PASS' if ok_rate else 'MISS'} >= "
        f"{TARGET_PER_CORE})"
    )
    print(
        f"p99 added delay at {TARGET_PER_CORE} streams: {p99_at_target * 1000:.2f} ms "
        f"({'PASS' if ok_delay else 'MISS'} < {TARGET_P99 * 1000:g} ms)"
    )
    return 0 if ok_rate and ok_delay else 1


def main() -> int:
    if not {BOT_CORE, CONTROLLER_CORE} <= os.sched_getaffinity(0):
        print(f"websocket benchmark needs cores {BOT_CORE} and {CONTROLLER_CORE}")
        return 1
    port = _free_port()
    with started_on(BOT_CORE):
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.websocket", "--echo", str(port)]
        )
    try:
        with started_on(CONTROLLER_CORE):
            return uvloop.run(run(port, psutil.Process(child.pid)))
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--echo"]:
        serve_echo(int(sys.argv[2]))
    else:
        sys.exit(main())
