"""Controller benchmark: replayed calls through the ESL double into a real ``ivagate run``.

The controller runs as its own process (``ivagate run``, default settings: INFO logs as JSON,
here to a file), so its CPU and memory are its own; it connects over loopback TCP to the ESL
double (``ivagate_kit.esl_double``, replaying the FreeSWITCH bytes recorded in tests/fixtures)
running in this process.
Every call is parked as it comes through the edge (the recorded CHANNEL_PARK with the
edge's ``X-Edge-Transport`` and ``X-Edge-Source`` headers) and goes to ``BenchBot``
(``controller_bot.py``): answer, one update, the final
intent (the flow of the issue's reference figures); the double plays RingCX's BYE ``HOLD``
seconds after the final INFO arrived. The controller has core ``CONTROLLER_CORE`` to itself;
this driver and the double run on ``DRIVER_CORE``.

Phases and figures:

1. rate: ``RATE`` calls/s offered for ``SECONDS``, ``RATE_RUNS`` times: completed calls/s,
   p50/p99 from the bot's ``send_update()``/``finish()`` to the ``uuid_send_info`` command
   read by the double (both stamped with ``time.perf_counter()``, CLOCK_MONOTONIC, shared by
   the two processes), and the controller's CPU as a share of one core over the steady part
   of the run. Each run's CPU is printed with the CPU time the hypervisor took from this
   machine meanwhile (steal): on a shared host, runs with steal cost visibly more. The
   figures and the targets are the median run's.
2. concurrency: ``CONCURRENT`` calls held open at once (each waiting for its BYE after the
   final intent): the controller's RSS.
3. peak: ``PEAK_CALLS`` offered at ``PEAK_RATE``, BYE as soon as the final INFO is seen:
   the calls/s completed when more is offered than can be taken, with the CPU of each side
   meanwhile. The side near a whole core set the figure; when that is the driver and the
   double, the figure is a floor of the controller's capacity.

Every call must end as Success (``ivagate_calls_total`` from ``GET /metrics``). Targets:
p99 < 10 ms and CPU < 15 % at 150 calls/s, RSS < 200 MB at 500 calls. Returns 1 on a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil

from benchmarks.controller_bot import BenchBot
from benchmarks.cores import pinning, started_on
from benchmarks.ivagate_run import ROOT, Controller, controller_process
from benchmarks.measure import CpuMeter, percentile
from ivagate_kit.esl_double import Channel, EslDouble

__all__ = ["main"]

RATE = 150.0  # calls per second offered in the rate phase
SECONDS = 10.0  # length of one rate run
RATE_RUNS = 3
WARMUP = 2.0  # seconds of the rate phase left out of the CPU figure
HOLD = 1.0  # seconds between a call's final INFO and RingCX's BYE
CONCURRENT = 500
PEAK_CALLS = 3000  # offered faster than they can be taken
PEAK_RATE = 3000.0
TARGET_P99 = 0.010
TARGET_CPU = 0.15
TARGET_RSS = 200 * 2**20
DRIVER_CORE = 0  # this process: the ESL double and the calls it plays
CONTROLLER_CORE = 1  # the controller alone
ESL_RECORDINGS = ROOT / "tests" / "fixtures" / "freeswitch-1.10.12" / "esl"  # what the double plays
_STAMP = re.compile(r'"t": ([0-9.e+-]+)')


# What the edge adds to every INVITE it forwards (kamailio/): the media node sees no call
# without them in the deployed stack.
EDGE_HEADERS = {"X-Edge-Transport": "tls", "X-Edge-Source": "198.51.100.7:5061"}


class Caller:
    """RingCX's side, through the edge: parks calls on the double and sends each BYE
    ``HOLD`` after its final INFO."""

    def __init__(self, double: EslDouble, hold: float) -> None:
        self.double = double
        self.hold = hold
        self.open: dict[str, Channel] = {}
        self.finals: dict[str, float] = {}  # uuid -> when its final INFO was seen

    async def offer(self, calls: int, rate: float) -> None:
        start = time.perf_counter()
        for i in range(calls):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            uuid = await self.double.park(headers=EDGE_HEADERS)
            self.open[uuid] = self.double.channels[uuid]

    async def hang_up(self) -> None:
        """Send the BYEs, until cancelled: scan the open calls every 10 ms."""
        while True:
            now = time.perf_counter()
            for uuid, channel in list(self.open.items()):
                if uuid not in self.finals and channel.infos and channel.infos[-1].get("final"):
                    self.finals[uuid] = now
                if uuid in self.finals and now - self.finals[uuid] >= self.hold:
                    await self.double.caller_hangup(uuid)
                    del self.open[uuid]
            await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def hanging_up(self) -> AsyncIterator[None]:
        """BYEs go out while inside; leaving waits until every call has ended."""
        task = asyncio.create_task(self.hang_up())
        try:
            yield
            await wait_until(
                lambda: not self.open, 60, f"the final intent of {len(self.open)} open calls"
            )
        finally:
            task.cancel()

    def final_count(self) -> int:
        return sum(1 for c in self.open.values() if c.infos and c.infos[-1].get("final"))


def info_latencies(double: EslDouble, since: float) -> list[float]:
    """Seconds from each INFO's ``t`` stamp to the double reading its command."""
    return [
        received - float(match.group(1))
        for received, command in double.received
        if received >= since
        and command.startswith("api uuid_send_info")
        and (match := _STAMP.search(command))
    ]


async def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def rate_phase(double: EslDouble, controller: Controller) -> dict[str, float]:
    caller = Caller(double, HOLD)
    calls = round(RATE * SECONDS)
    started = time.perf_counter()
    async with caller.hanging_up():
        offering = asyncio.create_task(caller.offer(calls, RATE))
        await asyncio.sleep(WARMUP)
        meter = CpuMeter({"cpu": controller.stats, "double_cpu": psutil.Process()})
        await offering
        cpu = meter.read()
    finished = time.perf_counter()
    latencies = info_latencies(double, started)
    return {
        "calls": calls,
        "calls_per_s": calls / (finished - started - HOLD),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "infos": len(latencies),
        **cpu,
    }


async def concurrency_phase(double: EslDouble, controller: Controller) -> dict[str, float]:
    caller = Caller(double, hold=0.0)  # its BYEs start once the figure is taken
    await caller.offer(CONCURRENT, RATE)
    await wait_until(lambda: caller.final_count() == CONCURRENT, 60, "every final intent")
    active = await controller.metric("ivagate_active_calls")
    rss = controller.stats.memory_info().rss
    async with caller.hanging_up():
        pass
    return {"active": active, "rss": rss}


async def peak_phase(double: EslDouble, controller: Controller) -> dict[str, float]:
    """Calls/s completed with ``PEAK_CALLS`` offered at ``PEAK_RATE`` and no hold, and the
    CPU of each side meanwhile: the one near a whole core set the figure."""
    caller = Caller(double, hold=0.0)
    started = time.perf_counter()
    meter = CpuMeter({"cpu": controller.stats, "double_cpu": psutil.Process()})
    async with caller.hanging_up():
        await caller.offer(PEAK_CALLS, PEAK_RATE)
    return {"calls_per_s": PEAK_CALLS / (time.perf_counter() - started), **meter.read()}


async def run() -> int:
    double = EslDouble(ESL_RECORDINGS, password="bench-secret")
    await double.start()
    with tempfile.TemporaryDirectory(prefix="ivagate-bench-") as tmp:
        log = Path(tmp) / "controller.log"
        try:
            with controller_process(
                double.port, double.password, log, CONTROLLER_CORE, bot=BenchBot
            ) as controller:
                await wait_until(
                    lambda: double.global_vars.get("ivagate_ready") == "true", 30, "ivagate_ready"
                )
                pinned = pinning()
                runs = [await rate_phase(double, controller) for _ in range(RATE_RUNS)]
                concurrency = await concurrency_phase(double, controller)
                peak = await peak_phase(double, controller)
                total = sum(run["calls"] for run in runs) + CONCURRENT + PEAK_CALLS
                await wait_until(
                    lambda: all(c.state == "gone" for c in double.channels.values()),
                    30,
                    "every call to end",
                )
                await asyncio.sleep(0.5)  # the controller retires the last calls
                success = await controller.metric("ivagate_calls_total", outcome="Success")
            # the double's reader sees the controller's connection close before it stops
            await wait_until(lambda: not double.connected, 10, "the controller to disconnect")
        except Exception:
            print(f"controller log (tail):\n{log.read_text()[-3000:]}")
            raise
        finally:
            await double.stop()
    return report(runs, concurrency, peak, total, success, pinned=pinned)


def report(
    runs: list[dict[str, float]],
    conc: dict[str, float],
    peak: dict[str, float],
    total: float,
    success: float,
    *,
    pinned: str,
) -> int:
    rate = sorted(runs, key=lambda run: run["cpu"])[len(runs) // 2]
    checks = [
        (f"p99 < {TARGET_P99 * 1000:.0f} ms at {RATE:.0f} calls/s", rate["p99"] < TARGET_P99),
        (f"CPU < {TARGET_CPU:.0%} of a core at {RATE:.0f} calls/s", rate["cpu"] < TARGET_CPU),
        (f"RSS < {TARGET_RSS >> 20} MB at {CONCURRENT} calls", conc["rss"] < TARGET_RSS),
        ("every call Success", success == total),
        (f"{CONCURRENT} calls active at once", conc["active"] == CONCURRENT),
    ]
    print(
        f"rate phase: {len(runs)} runs of {rate['calls']:.0f} calls offered at {RATE:.0f}/s; "
        "controller CPU (steal on the host meanwhile): "
        + ", ".join(f"{run['cpu']:.1%} ({run['steal']:.1%})" for run in runs)
    )
    print(f"median run: completed {rate['calls_per_s']:.1f} calls/s")
    print(
        f"  send_update()/finish() -> uuid_send_info on the wire ({rate['infos']:.0f} INFOs): "
        f"p50 {rate['p50'] * 1000:.2f} ms, p99 {rate['p99'] * 1000:.2f} ms"
    )
    print(
        f"  controller CPU: {rate['cpu']:.1%} of one core "
        f"(the ESL double and this driver: {rate['double_cpu']:.1%}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"  pinning: {pinned}; this driver and the ESL double on core {DRIVER_CORE}")
    print(
        f"concurrency phase: {conc['active']:.0f} active calls, "
        f"controller RSS {conc['rss'] / 2**20:.1f} MB"
    )
    print(
        f"peak phase: {PEAK_CALLS} calls offered at {PEAK_RATE:.0f}/s, completed "
        f"{peak['calls_per_s']:.1f} calls/s (controller CPU {peak['cpu']:.0%} of its core, "
        f"the ESL double and this driver {peak['double_cpu']:.0%} of theirs)"
    )
    print(f"outcomes: {success:.0f} Success of {total:.0f} calls")
    for name, passed in checks:
        print(f"  [{'PASS' if passed else 'MISS'}] {name}")
    return 0 if all(passed for _, passed in checks) else 1


def main() -> int:
    if not {DRIVER_CORE, CONTROLLER_CORE} <= os.sched_getaffinity(0):
        print(f"controller benchmark needs cores {DRIVER_CORE} and {CONTROLLER_CORE}")
        return 1
    with started_on(DRIVER_CORE):
        return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
