"""Edge benchmark: the highest call rate with no failed call, through the edge and direct.

SIPp plays RingCX (uac_call.xml: INVITE, ACK, two INFOs and a BYE from the node) against a
SIPp media node (uas_answer.xml), once straight to the node and once through the shipped
Kamailio edge, over TCP (one connection, as RingCX keeps over TLS) and over UDP. The two
SIPps share core 0 in both runs and Kamailio has core 1 to itself, so the pair drives the
same CPU either way and the ratio says whether the edge limits the rate (target: the edge
costs under 10 % of the direct rate). A rate passes when every call completes within
GRACE seconds of the run's end. The direct search doubles the rate until a run fails; the
edge search starts at the direct rate (the pair cannot drive more), halves until a run
passes; both then bisect. The edge's own CPU time per call is taken at its best rate; times
that rate it gives the load of the edge's core (about 100 %: the edge is what limits).
Debian's SIPp has no TLS: TLS is measured with the project's RingCX emulator instead (a new
TLS connection and handshake per call), as edge CPU per call next to TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.edge import (
    CALLER,
    NODE_HOSTS,
    Edge,
    EdgeSetup,
    free_port,
    start_caller,
    start_node,
    start_sipp,
    write_certificates,
)

from benchmarks.cores import pinning, started_on
from ivagate_kit import CallPlan, run_load
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.transport import TransportName

__all__ = ["main"]

SIPP_CORE = 0  # both SIPps (and this process: the emulator and its stand-in node)
EDGE_CORE = 1  # Kamailio alone
SECONDS_PER_RUN = 3.0
GRACE = 1.0  # SIPp -timeout is whole seconds; a call still running then has failed
FIRST_RATE = 400.0
HIGHEST_RATE = 25600.0
BISECT_STEPS = 3
TARGET_COST = 0.10
SIPP_TRANSPORTS = {"tcp": "t1", "udp": "u1"}
# Tuning measured on one core (kamailio/README.md, "Tuning"): one UDP and one TCP worker per
# core (2 or 4 of each ran no faster); shm holds ~5 s of transactions, and 256 MB ran out
# at 1600 calls/s.
EDGE_DEFINES = {"CHILDREN": "1", "TCP_CHILDREN": "1"}
EDGE_SHM_MB = 1024


@dataclass
class Search:
    """A search for the highest passing rate; ``tried``: rate -> passed, in the order run."""

    passes: Callable[[float], bool]
    tried: dict[float, bool] = field(default_factory=dict)

    def run(self, rate: float) -> bool:
        self.tried[rate] = passed = self.passes(rate)
        return passed

    def bisect(self, good: float, bad: float) -> float:
        for _ in range(BISECT_STEPS):
            middle = round((good + bad) / 2)
            if self.run(middle):
                good = middle
            else:
                bad = middle
        return good

    def upward(self, rate: float) -> float:
        """Double from ``rate`` until a run fails (or HIGHEST_RATE passes), then bisect."""
        good = 0.0
        while rate <= HIGHEST_RATE:
            if not self.run(rate):
                return self.bisect(good, rate)
            good, rate = rate, rate * 2
        return good

    def downward(self, rate: float) -> float:
        """``rate`` is the most worth trying; halve until a run passes, then bisect."""
        bad = rate
        while rate >= FIRST_RATE / 8:
            if self.run(rate):
                return rate if rate == bad else self.bisect(rate, bad)
            bad, rate = rate, rate / 2
        return 0.0


def wait_until_listening(host: str, port: int, transport: str) -> None:
    """SIPp takes a moment to bind; a TCP caller started earlier is refused."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if transport == "udp":
            time.sleep(0.2)
            return
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"media node {host}:{port} never listened")


@dataclass
class Trials:
    """SIPp runs for one transport; ``edge_cpu``: rate -> edge CPU seconds per call."""

    workdir: Path
    transport: str
    edge_cpu: dict[float, float] = field(default_factory=dict)
    pinned: str = ""  # the cores the OS reports during a passing edge run
    reports: dict[float, int] = field(default_factory=dict)  # INFO reports the node's got

    def direct(self, rate: float) -> bool:
        return self._trial(rate, via_edge=False)

    def via_edge(self, rate: float) -> bool:
        return self._trial(rate, via_edge=True)

    def _trial(self, rate: float, *, via_edge: bool) -> bool:
        """One SIPp run at ``rate`` calls/s; True when no call failed."""
        node_port = free_port(NODE_HOSTS[0])
        sipp_transport = SIPP_TRANSPORTS[self.transport]
        calls = max(1, int(rate * SECONDS_PER_RUN))
        timeout = SECONDS_PER_RUN + GRACE
        name = f"{'edge' if via_edge else 'direct'}-{self.transport}-{rate:g}"
        # the node outlives the run: a node exiting after its last call would close the TCP
        # connection under the caller's last call
        node = start_node(
            self.workdir, node_port, pause_ms=0, calls=10**9, transport=sipp_transport, trace=False
        )
        try:
            wait_until_listening(NODE_HOSTS[0], node_port, self.transport)
            if not via_edge:
                port = free_port(CALLER)
                caller = start_sipp(
                    "uac_call",
                    self.workdir,
                    remote=f"{NODE_HOSTS[0]}:{node_port}",
                    transport=sipp_transport,
                    local_ip=CALLER,
                    local_port=port,
                    keys={"did": "15550001000", "contact_port": str(port)},
                    calls=calls,
                    rate=rate,
                    timeout=timeout,
                    name=f"caller-{name}",
                    trace=False,
                )
                return caller.wait(timeout + 10) == 0
            suffix = "" if self.transport == "udp" else f";transport={self.transport}"
            setup = EdgeSetup(
                nodes=[f"sip:{NODE_HOSTS[0]}:{node_port}{suffix}"],
                tls=False,
                shm_mb=EDGE_SHM_MB,
                defines=EDGE_DEFINES,
            )
            edge_dir = self.workdir / name
            edge_dir.mkdir(exist_ok=True)
            with started_on(EDGE_CORE):
                edge = Edge(edge_dir, setup).start()
            stack = contextlib.ExitStack()
            try:
                reports = stack.enter_context(report_reader(edge))
                cpu_before = edge.cpu_seconds()
                caller = start_caller(
                    edge,
                    self.workdir,
                    transport=sipp_transport,
                    calls=calls,
                    rate=rate,
                    timeout=timeout,
                    name=f"caller-{name}",
                    trace=False,
                )
                passed = caller.wait(timeout + 10) == 0
                if passed:
                    self.edge_cpu[rate] = (edge.cpu_seconds() - cpu_before) / calls
                    self.pinned = pinning()
                    self.reports[rate] = reports.count
                return passed
            finally:
                stack.close()
                edge.stop()
        finally:
            node.stop()


@contextlib.contextmanager
def report_reader(edge: Edge) -> Iterator[ReportReader]:
    """The media node's controller as the edge sees it (``ivagate.edge_reports``): a
    listener on the node's address that reads and counts the edge's INFO reports."""
    server = socket.create_server((NODE_HOSTS[0], edge.report_port))
    reader = ReportReader(server)
    thread = threading.Thread(target=reader.serve, daemon=True)
    thread.start()
    try:
        yield reader
    finally:
        reader.stop()
        thread.join()


@dataclass
class ReportReader:
    server: socket.socket
    count: int = 0
    connection: socket.socket | None = None

    def serve(self) -> None:
        with contextlib.suppress(OSError):
            self.connection, _ = self.server.accept()  # the edge keeps one connection
            while data := self.connection.recv(65536):
                self.count += data.count(b"\n")

    def stop(self) -> None:
        for sock in (self.connection, self.server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


EMULATOR_CALLS = 200
EMULATOR_RATE = 40.0
INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "done", "final": True}]


async def emulator_run(workdir: Path, transport: TransportName) -> tuple[int, float]:
    """EMULATOR_CALLS emulator calls through the edge; (failed calls, edge CPU s per call)."""
    port = free_port(NODE_HOSTS[0])
    setup = EdgeSetup(
        nodes=[f"sip:{NODE_HOSTS[0]}:{port}"],
        tls_dir=write_certificates(workdir / "tls"),
        shm_mb=EDGE_SHM_MB,
        defines=EDGE_DEFINES,
    )
    edge_dir = workdir / f"edge-emulator-{transport}"
    edge_dir.mkdir(exist_ok=True)
    node = MediaNode(NODE_HOSTS[0], port, script=NodeScript(infos=INFOS, info_interval=0.0))
    with started_on(EDGE_CORE):
        edge = Edge(edge_dir, setup).start()
    try:
        async with node:
            target = edge.tls if transport == "tls" else edge.sip
            # signalling only, as these figures always were (the kit sends RTP by default)
            plan = CallPlan(
                target=target, transport=transport, local_host=CALLER, timeout=20, media=False
            )
            before = edge.cpu_seconds()
            reports = await run_load(plan, calls=EMULATOR_CALLS, rate=EMULATOR_RATE)
            cpu = (edge.cpu_seconds() - before) / EMULATOR_CALLS
    finally:
        edge.stop()
    return sum(not report.ok for report in reports), cpu


def verdict(passed: bool, text: str) -> bool:
    print(f"{'PASS' if passed else 'MISS'}  {text}")
    return passed


def trials_line(label: str, search: Search) -> str:
    steps = " ".join(f"{rate:g}{'+' if ok else '-'}" for rate, ok in search.tried.items())
    return f"  {label}: {steps}"


def main() -> int:
    if not {SIPP_CORE, EDGE_CORE} <= os.sched_getaffinity(0):
        print(f"edge benchmark needs cores {SIPP_CORE} and {EDGE_CORE}")
        return 1
    started = time.monotonic()
    print(__doc__.strip().splitlines()[0])
    print(
        f"pinning: SIPp caller + SIPp node share core {SIPP_CORE} in both runs; Kamailio has"
        f" core {EDGE_CORE} alone (-m {EDGE_SHM_MB}, "
        + ", ".join(f"{k}={v}" for k, v in EDGE_DEFINES.items())
        + ")"
    )
    print(
        f"SIPp over TCP (one connection each way) and UDP; runs of {SECONDS_PER_RUN:g} s,"
        f" a rate passes when all calls end within {GRACE:g} s of the last start"
    )
    rows, notes, ok = [], [], True
    with started_on(SIPP_CORE):
        for transport in SIPP_TRANSPORTS:
            with tempfile.TemporaryDirectory(prefix=f"ivagate-bench-edge-{transport}-") as tmp:
                trials = Trials(Path(tmp), transport)
                direct_search, edge_search = Search(trials.direct), Search(trials.via_edge)
                direct = direct_search.upward(FIRST_RATE)
                edge = edge_search.downward(direct) if direct else 0.0
            notes += [
                trials_line(f"{transport} direct", direct_search),
                trials_line(f"{transport} edge", edge_search),
            ]
            if trials.pinned:
                notes.append(f"  {transport} edge run: {trials.pinned}")
            if edge in trials.reports:
                calls = int(edge * SECONDS_PER_RUN)
                notes.append(
                    f"  {transport} edge run: {trials.reports[edge]} INFO reports for"
                    f" {calls} calls read by the node's controller stand-in"
                )
            rows.append((transport, direct, edge, trials.edge_cpu.get(edge, 0.0)))
        emulator = []
        for name in ("tcp", "tls"):
            with tempfile.TemporaryDirectory(prefix=f"ivagate-bench-edge-{name}-") as tmp:
                emulator.append((name, *asyncio.run(emulator_run(Path(tmp), name))))
    print(
        f"{'SIPp':<6}{'direct cps':>12}{'edge cps':>10}{'edge/direct':>13}{'cost':>7}"
        f"{'edge CPU/call':>15}{'edge cps/core':>15}{'edge core load':>16}"
    )
    for transport, direct, edge, cpu in rows:
        ratio = edge / direct if direct else 0.0
        capped = "+" if direct >= HIGHEST_RATE else " "
        print(
            f"{transport:<6}{direct:>11.0f}{capped}{edge:>10.0f}{ratio:>13.2f}{1 - ratio:>7.0%}"
            f"{cpu * 1000:>12.2f} ms{1 / cpu if cpu else 0:>15.0f}{cpu * edge:>16.0%}"
        )
    print(
        "edge core load = edge CPU/call x edge cps: about 100 % means the edge's core is what"
        " limits (over 100 %: a backlog cleared within the grace second)"
    )
    print("rates tried (+ passed, - failed):")
    print("\n".join(notes))
    print(
        f"RingCX emulator through the edge, {EMULATOR_CALLS} calls at {EMULATOR_RATE:g}/s, a new"
        f" connection per call (TLS: handshake included), emulator and node on core {SIPP_CORE}:"
    )
    for name, bad, cpu in emulator:
        print(f"  {name}: {bad} failed calls, edge CPU {cpu * 1000:.2f} ms per call")
    for transport, direct, edge, _ in rows:
        cost = 1 - edge / direct if direct else 1.0
        ok &= verdict(
            direct > 0 and cost < TARGET_COST,
            f"edge cost over SIPp {transport}: {cost:.0%} of the direct rate"
            f" (target under {TARGET_COST:.0%})",
        )
    for name, bad, _ in emulator:
        ok &= verdict(bad == 0, f"emulator over {name} through the edge: {bad} failed calls")
    print(f"benchmark time {time.monotonic() - started:.0f} s")
    return 0 if ok else 1
