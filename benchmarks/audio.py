"""Audio benchmark: concurrent two-way streams (issue 13) on one media node, through a real
FreeSWITCH.

The controller runs as its own process (``ivagate run``) on core ``CONTROLLER_CORE``, with
``AudioBenchBot`` (``audio_bot.py``) for every call: answer, ``open_stream(16000)`` (the rate
voice engines take: FreeSWITCH resamples the caller's 8 kHz G.711 to 16 kHz L16), echo every
caller frame back with ``play()``, an update every ``UPDATE_EVERY`` seconds. FreeSWITCH (this
tree, ``tests/support/fs_node.py``) and the callers share core ``DRIVER_CORE`` with this
driver. The callers are SIPp over UDP straight to FreeSWITCH (``audio/caller.xml``; no edge:
it carries no audio): a PCMU offer, SIPp's RTP stream playing a noise file (random mu-law
codes, so every frame carries sound), the bot's INFOs answered with 200 (``-aa``), BYE after
the hold.

The number of streams steps through STEPS. At each step SIPp places that many calls at
CALL_RATE, and once all their streams are open (``ivagate_audio_streams_active``) a window of
STEADY seconds is measured; every call then stays open MARGIN seconds more before its BYE.
Figures per step, from ``/metrics`` deltas unless said:

* frames ``in`` (caller to bot), ``out`` (bot to caller), ``dropped`` (caller frames the bot
  did not read in time) and ``lost`` (RTP sequence gaps from FreeSWITCH), over the whole step;
* CPU over the window as shares of one core: the controller (so ms of controller CPU per
  stream-second) and how long its threads waited for their core (other work on it), FreeSWITCH
  (and its ms per stream-second), SIPp, each core as a whole, the host's steal;
* p99 delay from a frame's arrival from FreeSWITCH to the bot's iterator, over every frame of
  the step (the bot's own figures), and p99 arrival against the frame's media time above the
  stream's earliest (how unevenly frames reach the controller: FreeSWITCH's and SIPp's
  timing on a shared core, and the controller's reading, included);
* p99 lateness of the pacer's 20 ms ticks over the window (``ivagate_audio_tick_late_seconds``):
  taken as the jitter of the bot's audio toward the caller, as the controller sends it;
* p99 INFO hand-off (``ivagate_info_handoff_seconds``, ``send_update()`` to FreeSWITCH's reply)
  over the window: call control under stream load.

It stops after the first step with a frame lost or dropped or a call that failed, or with the
controller or FreeSWITCH at SATURATED of its core: beyond that FreeSWITCH's own threads, its
event socket's too, wait their turn, which is FreeSWITCH's starvation, not the controller's.
The figure is the most streams with none lost or dropped; streams per controller core are
extrapolated from the controller's CPU per stream there. Targets (issue 13): >= 250 streams
per core, 0 frames lost or dropped up to 250 streams; and, at the largest clean step with
FreeSWITCH below SATURATED (else the first): p99 delay < 20 ms, p99 jitter (pacer lateness)
< 5 ms, INFO hand-off p99 < 10 ms. When FreeSWITCH runs out first, the stream count is a
floor of the controller's. Returns 1 on a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.samples import Sample
from tests.support.edge import CALLER, SippRun, free_port, start_sipp, stop_all_sipp
from tests.support.freeswitch import find_binary
from tests.support.fs_node import LiveNode, live_freeswitch

from benchmarks.audio_bot import AudioBenchBot
from benchmarks.cores import pinning, started_on
from benchmarks.ivagate_run import Controller, controller_process, metric_value, wait_ready
from benchmarks.measure import CpuMeter, histogram_quantile, percentile

__all__ = ["main"]

STEPS = (50, 100, 150, 200, 250, 300, 350, 400)  # concurrent streams
RATE = 16000  # the streams' L16 rate
FRAME = 0.02  # seconds of audio in a frame
CALL_RATE = 25.0  # new calls per second while a step fills: set-up costs FreeSWITCH ~9 ms each
STEADY = 10.0  # seconds measured once every stream of a step is open
MARGIN = 5.0  # seconds every call stays open after the window, at least
UPDATE_EVERY = 2.0  # seconds between a bot's INFOs
SATURATED = 0.9  # share of its core at which the controller or FreeSWITCH counts as full
NOISE_SECONDS = 3  # the caller's audio, looped
TARGET_STREAMS = 250
TARGET_DELAY = 0.020
TARGET_JITTER = 0.005
TARGET_INFO = 0.010
DRIVER_CORE = 0  # this driver, FreeSWITCH and SIPp
CONTROLLER_CORE = 1  # the controller alone
RTP_PORTS = 4 * max(STEPS) + 200  # RTP and RTCP of the caller's leg and of the stream's
SCENARIO = Path(__file__).resolve().parent / "audio" / "caller.xml"
_FAILED = re.compile(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)")


@dataclass
class Step:
    """One number of concurrent streams, measured."""

    streams: int
    opened: int  # streams the step opened
    steady: bool  # all of them were open at once (else the window began without some)
    active: int  # streams open as the window began
    failed_calls: int  # SIPp's count
    # direction -> frames over the whole step; "kernel": of those lost, dropped by the kernel
    # from the controller's full sockets (by the window's end); "gaps": missing in media time
    frames: dict[str, float]
    cpu: dict[str, float]  # CpuMeter's shares over the window
    delay_p99: float  # arrival from FreeSWITCH -> the bot's iterator, seconds
    arrival_p99: float  # arrival against media time, above the stream's earliest
    tick_p99: float  # the pacer's lateness
    info_p99: float  # send_update() -> FreeSWITCH's reply
    infos: int  # INFOs handed off in the window
    load: float  # 1-minute load average at the window's end

    @property
    def clean(self) -> bool:
        return (
            self.steady
            and self.opened == self.streams
            and not self.failed_calls
            and not self.frames["lost"]
            and not self.frames["dropped"]
        )

    def per_stream_ms(self, process: str = "controller") -> float:
        """``process``'s CPU, ms per stream-second."""
        return self.cpu[process] / max(self.active, 1) * 1000

    @property
    def freeswitch_full(self) -> bool:
        """FreeSWITCH used its core: its threads (the event socket's too) wait their turn,
        and latencies through it are its starvation, not the controller's."""
        return self.cpu["FreeSWITCH"] >= SATURATED

    @property
    def last(self) -> bool:
        """No step after this one is worth running."""
        return not self.clean or self.freeswitch_full or self.cpu["controller"] >= SATURATED


def write_noise(path: Path) -> None:
    """Random mu-law codes, headerless: SIPp 3.6.1 plays a file's bytes as they are (a WAV
    header would be played as sound)."""
    path.write_bytes(random.Random(13).randbytes(8000 * NOISE_SECONDS))


def socket_drops(process: psutil.Process) -> int:
    """Datagrams the kernel dropped so far because one of ``process``'s open UDP sockets was
    full: frames it did not read in time (``drops`` of /proc/net/udp, by socket inode)."""
    inodes = set()
    for fd in Path(f"/proc/{process.pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[len("socket:[") : -1])
    rows = (line.split() for line in Path("/proc/net/udp").read_text().splitlines()[1:])
    return sum(int(row[-1]) for row in rows if row[9] in inodes)


def failed_calls(sipp: SippRun) -> int:
    """SIPp's cumulative "Failed call" count, from the last statistics screen it printed."""
    counts = _FAILED.findall(sipp.text())
    return int(counts[-1]) if counts else -1


def grown(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
    """How much counter ``name`` grew between two reads of ``/metrics``."""
    return metric_value(after, name, **labels) - metric_value(before, name, **labels)


def frame_counts(before: list[Sample], after: list[Sample]) -> dict[str, float]:
    return {
        direction: grown(before, after, "ivagate_audio_frames_total", direction=direction)
        for direction in ("in", "out", "dropped", "lost")
    }


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` passed (False)."""
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)
    return True


class Bench:
    """The processes under test and where the bot writes its figures."""

    def __init__(self, node: LiveNode, controller: Controller, workdir: Path, results: Path):
        assert node.pid is not None
        self.node = node
        self.freeswitch = psutil.Process(node.pid)
        self.controller = controller
        self.workdir = workdir
        self.results = results
        self.noise = workdir / "noise.ulaw"
        self.pinned = ""
        write_noise(self.noise)

    async def until_streams(self, wanted: int, seconds: float) -> bool:
        async def active() -> bool:
            return await self.controller.metric("ivagate_audio_streams_active") == wanted

        return await wait_for(active, seconds)

    async def bot_figures(self, offset: int, calls: int) -> tuple[float, float, int]:
        """p99 delay to the iterator, p99 arrival against media time, over every frame of
        the ``calls`` whose lines the bots appended past ``offset`` (each at its hangup), and
        the frames missing from their media time (20 ms of it each, the first at 0)."""

        async def written() -> bool:
            return self.results.read_bytes()[offset:].count(b"\n") >= calls

        await wait_for(written, 10)
        with self.results.open() as lines:
            lines.seek(offset)
            figures = [json.loads(line) for line in lines]
        delays = [d / 1e6 for line in figures for d in line["delay_us"]]
        arrivals = [a / 1e6 for line in figures for a in line["arrival_us"]]
        gaps = sum(round(line["media_s"] / FRAME) + 1 - line["frames"] for line in figures)
        if len(delays) < 2:
            return math.nan, math.nan, gaps
        return percentile(delays, 99), percentile(arrivals, 99), gaps

    async def step(self, streams: int) -> Step:
        fill = streams / CALL_RATE
        hold = fill + STEADY + MARGIN  # from each call's ACK: the last stream opens at ~fill
        offset = self.results.stat().st_size if self.results.exists() else 0
        start = await self.controller.samples()
        sipp = start_sipp(
            SCENARIO,
            self.workdir,
            remote=self.node.sip,
            local_ip=CALLER,
            keys={"did": "15550001000", "audio": f"{self.noise},-1,0"},
            calls=streams,
            rate=CALL_RATE,
            limit=streams,
            timeout=fill + hold + 30,
            name=f"caller-{streams}",
            trace=False,
            extra=[
                "-aa",
                "-d",
                str(round(hold * 1000)),
                "-mi",
                CALLER,
                "-mp",
                str(free_port(CALLER)),
            ],
        )
        steady = await self.until_streams(streams, fill + MARGIN)
        self.pinned = pinning()  # SIPp runs now
        meter = CpuMeter(
            {
                "controller": self.controller.stats,
                "FreeSWITCH": self.freeswitch,
                "SIPp": psutil.Process(sipp.proc.pid),
            }
        )
        window_start = await self.controller.samples()
        await asyncio.sleep(STEADY)
        cpu = meter.read()
        dropped_by_kernel = socket_drops(self.controller.stats)
        window_end = await self.controller.samples()
        load = os.getloadavg()[0]
        await asyncio.to_thread(sipp.wait, fill + hold + 60)
        await self.until_streams(0, 30)
        end = await self.controller.samples()
        opened = round(grown(start, end, "ivagate_audio_streams_total"))
        delay_p99, arrival_p99, gaps = await self.bot_figures(offset, opened)
        return Step(
            streams=streams,
            opened=opened,
            steady=steady,
            active=round(metric_value(window_start, "ivagate_audio_streams_active")),
            failed_calls=failed_calls(sipp),
            frames=frame_counts(start, end) | {"gaps": gaps, "kernel": dropped_by_kernel},
            cpu=cpu,
            delay_p99=delay_p99,
            arrival_p99=arrival_p99,
            tick_p99=histogram_quantile(
                0.99, "ivagate_audio_tick_late_seconds", window_start, window_end
            ),
            info_p99=histogram_quantile(
                0.99, "ivagate_info_handoff_seconds", window_start, window_end
            ),
            infos=round(grown(window_start, window_end, "ivagate_info_handoff_seconds_count")),
            load=load,
        )


async def run(binary: str, workdir: Path) -> tuple[list[Step], str]:
    steps: list[Step] = []
    (workdir / "fs").mkdir()
    with live_freeswitch(
        binary, None, workdir / "fs", rtp_ports=RTP_PORTS, edge_cidrs=f"{CALLER}/32"
    ) as node:
        log, results = workdir / "controller.log", workdir / "bot.jsonl"
        options = {
            "results": str(results),
            "rate": RATE,
            "update_every": UPDATE_EVERY,
        }
        with controller_process(
            node.esl_port,
            node.esl_password,
            log,
            CONTROLLER_CORE,
            bot=AudioBenchBot,
            options=options,
        ) as controller:
            wait_ready(controller)
            bench = Bench(node, controller, workdir, results)
            try:
                for streams in STEPS:
                    step = await bench.step(streams)
                    steps.append(step)
                    print_step(step)
                    if step.last:
                        break
            finally:
                stop_all_sipp()  # a step that failed may leave its callers running
    return steps, bench.pinned


def ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1000:.{digits}f}"


COLUMNS = (
    ("streams", 8),
    ("open", 5),
    ("fail", 5),
    ("in", 8),
    ("out", 8),
    ("drop", 6),
    ("lost", 6),
    ("kern", 6),
    ("gaps", 6),
    ("ctrl", 5),
    ("wait", 5),
    ("ms/s", 6),
    ("FS", 5),
    ("ms/s", 6),
    ("SIPp", 5),
    ("core0", 6),
    ("core1", 6),
    ("delay", 7),
    ("arriv", 7),
    ("tick", 6),
    ("INFO", 7),
    ("INFOs", 6),
    ("load", 5),
)
LEGEND = f"""\
per step: streams wanted, streams opened, calls SIPp failed; frames in (caller to bot), out,
dropped, lost (of which the kernel dropped from the controller's full sockets, by the window's
end), and the gaps in the media time the bots saw, over the step; over the {STEADY:g} s
window with every stream open, as % of a core: controller CPU, its threads' wait for their
core, and its ms of CPU per stream-second; FreeSWITCH, and its ms per stream-second; SIPp;
all of core 0 and all of core 1; p99 ms: delay from FreeSWITCH to the bot's iterator and
arrival against media time (every frame of the step), pacer tick lateness, INFO hand-off;
INFOs handed off; load average"""


def print_header() -> None:
    print(LEGEND)
    print("".join(f"{name:>{width}}" for name, width in COLUMNS))


def print_step(step: Step) -> None:
    frames, cpu = step.frames, step.cpu
    row = [
        f"{step.streams}",
        f"{step.opened}",
        f"{step.failed_calls}",
        *(f"{frames[d]:.0f}" for d in ("in", "out", "dropped", "lost", "kernel", "gaps")),
        f"{cpu['controller']:.0%}",
        f"{cpu['controller wait']:.0%}",
        f"{step.per_stream_ms():.2f}",
        f"{cpu['FreeSWITCH']:.0%}",
        f"{step.per_stream_ms('FreeSWITCH'):.2f}",
        *(f"{cpu[name]:.0%}" for name in ("SIPp", "core 0", "core 1")),
        *(ms(x) for x in (step.delay_p99, step.arrival_p99, step.tick_p99, step.info_p99)),
        f"{step.infos}",
        f"{step.load:.1f}",
    ]
    note = "" if step.steady else f"  (not all open at once: {step.active} as the window began)"
    print("".join(f"{text:>{width}}" for text, (_, width) in zip(row, COLUMNS, strict=True)) + note)


def report(steps: list[Step], pinned: str) -> int:
    print(f"pinning: {pinned}; this driver on core {DRIVER_CORE}")
    best = next((step for step in reversed(steps) if step.clean), None)
    last = steps[-1]
    if best is None:
        print("MISS  no step without a frame lost or dropped or a failed call")
        return 1
    roomy = [step for step in steps if step.clean and not step.freeswitch_full]
    timed = roomy[-1] if roomy else steps[0]
    per_core = 1000 / best.per_stream_ms()
    print(
        f"most streams with 0 frames lost or dropped: {best.streams} (controller"
        f" {best.cpu['controller']:.0%} of its core, {best.per_stream_ms():.2f} ms of CPU per"
        f" stream-second: {per_core:.0f} streams per core)"
    )
    if not last.clean:
        print(
            f"at {last.streams}: {last.opened} streams opened, {last.failed_calls} calls"
            f" failed, {last.frames['dropped']:.0f} frames dropped, {last.frames['lost']:.0f} lost"
        )
    print(
        f"at {last.streams}, the last step: FreeSWITCH {last.cpu['FreeSWITCH']:.0%} of core"
        f" {DRIVER_CORE} ({last.cpu[f'core {DRIVER_CORE}']:.0%} busy in all), the controller"
        f" {last.cpu['controller']:.0%} of its own"
        + (
            ": FreeSWITCH ran out first, the stream count is a floor of the controller's"
            if last.freeswitch_full and last.cpu["controller"] < SATURATED
            else ""
        )
    )
    checks = [
        (
            f"{per_core:.0f} streams per controller core >= {TARGET_STREAMS}",
            per_core >= TARGET_STREAMS,
        ),
        (
            f"0 frames lost or dropped up to {TARGET_STREAMS} streams (none up to {best.streams})",
            best.streams >= TARGET_STREAMS,
        ),
    ]
    timing = [
        (
            f"p99 delay FreeSWITCH -> iterator {ms(timed.delay_p99, 2)} ms < {ms(TARGET_DELAY)} ms",
            timed.delay_p99 < TARGET_DELAY,
        ),
        (
            f"p99 jitter (pacer lateness) {ms(timed.tick_p99, 2)} ms < {ms(TARGET_JITTER)} ms",
            timed.tick_p99 < TARGET_JITTER,
        ),
        (
            f"INFO hand-off p99 {ms(timed.info_p99, 2)} ms < {ms(TARGET_INFO)} ms",
            timed.info_p99 < TARGET_INFO,
        ),
    ]
    for text, passed in checks:
        print(f"{'PASS' if passed else 'MISS'}  {text}")
    print(
        f"at {timed.streams} streams, the most with FreeSWITCH below {SATURATED:.0%} of its core:"
    )
    for text, passed in timing:
        print(f"{'PASS' if passed else 'MISS'}  {text}")
    return 0 if all(passed for _, passed in checks + timing) else 1


def main() -> int:
    binary = find_binary()
    if binary is None or shutil.which("sipp") is None:
        print("audio benchmark skipped: needs FreeSWITCH (tests/support/freeswitch.py) and SIPp")
        return 0
    if not {DRIVER_CORE, CONTROLLER_CORE} <= os.sched_getaffinity(0):
        print(f"audio benchmark needs cores {DRIVER_CORE} and {CONTROLLER_CORE}")
        return 1
    started = time.monotonic()
    print(__doc__.strip().splitlines()[0])
    print(f"streams at {RATE} Hz, {CALL_RATE:g} new calls/s")
    print_header()
    with tempfile.TemporaryDirectory(prefix="ivagate-bench-audio-") as tmp, started_on(DRIVER_CORE):
        steps, pinned = asyncio.run(run(binary, Path(tmp)))
    failed = report(steps, pinned)
    print(
        f"benchmark time {time.monotonic() - started:.0f} s; load average"
        f" {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    return failed


if __name__ == "__main__":
    sys.exit(main())
