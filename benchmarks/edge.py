"""Edge benchmark: the highest call rate with no failed call, through the edge and direct.

SIPp plays RingCX (uac_call.xml: INVITE, ACK, two INFOs and a BYE from the node) against a
SIPp media node (uas_answer.xml), once through the shipped Kamailio edge and once straight
to the node, over TCP (one connection, as RingCX keeps) and over UDP. A rate passes when
every one of its calls completes; the search doubles the rate until a run fails, then
bisects. Figures are calls per second on this machine, both paths measured in the same run,
the edge's cost as a share of the direct rate (target: under 10 %), and the CPU time the
edge's processes spent per call at the best edge rate (so calls/s per core of edge).
Debian's SIPp has no TLS: TLS is measured with the project's RingCX emulator instead, as
edge CPU per call over TLS next to TCP, at a rate the Python emulator sustains.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections.abc import Callable
from functools import partial
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

from ivagate.emulator import CallPlan, run_load
from ivagate.emulator.media_node import MediaNode, NodeScript
from ivagate.emulator.transport import TransportName

__all__ = ["main"]

SECONDS_PER_RUN = 4.0
RUN_TIMEOUT = 2 * SECONDS_PER_RUN + 5  # an overloaded run gives up after this
FIRST_RATE = 50.0
HIGHEST_RATE = 3200.0
BISECT_STEPS = 3
TARGET_COST = 0.10
SIPP_TRANSPORTS = {"tcp": "t1", "udp": "u1"}
# (transport, rate) -> the edge's CPU seconds per call in a passing run
EDGE_CPU_PER_CALL: dict[tuple[str, float], float] = {}


def highest_passing_rate(passes: Callable[[float], bool]) -> float:
    """Double from FIRST_RATE until a run fails, then bisect between the last pass and it."""
    good, bad = 0.0, None
    rate = FIRST_RATE
    while rate <= HIGHEST_RATE:
        if not passes(rate):
            bad = rate
            break
        good, rate = rate, rate * 2
    if bad is None:
        return good
    for _ in range(BISECT_STEPS):
        middle = (good + bad) / 2
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good


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


def trial(workdir: Path, transport: str, rate: float, *, via_edge: bool) -> bool:
    """One SIPp run at ``rate`` calls/s; True when no call failed."""
    node_port = free_port(NODE_HOSTS[0])
    sipp_transport = SIPP_TRANSPORTS[transport]
    calls = max(1, int(rate * SECONDS_PER_RUN))
    # the node outlives the run: a node exiting after its last call would close the TCP
    # connection under the caller's last call
    node = start_node(
        workdir, node_port, pause_ms=0, calls=10**9, transport=sipp_transport, trace=False
    )
    try:
        wait_until_listening(NODE_HOSTS[0], node_port, transport)
        if via_edge:
            suffix = "" if transport == "udp" else f";transport={transport}"
            setup = EdgeSetup(
                nodes=[f"sip:{NODE_HOSTS[0]}:{node_port}{suffix}"],
                tls=False,
                shm_mb=512,
                defines={"CHILDREN": "4", "TCP_CHILDREN": "4"},
            )
            edge_dir = workdir / f"edge-{transport}-{rate:g}"
            edge_dir.mkdir()
            with Edge(edge_dir, setup) as edge:
                cpu_before = edge.cpu_seconds()
                caller = start_caller(
                    edge,
                    workdir,
                    transport=sipp_transport,
                    calls=calls,
                    rate=rate,
                    timeout=RUN_TIMEOUT,
                    name=f"caller-edge-{transport}-{rate:g}",
                    trace=False,
                )
                passed = caller.wait(RUN_TIMEOUT + 10) == 0
                if passed:
                    EDGE_CPU_PER_CALL[(transport, rate)] = (edge.cpu_seconds() - cpu_before) / calls
                return passed
        port = free_port(CALLER)
        caller = start_sipp(
            "uac_call",
            workdir,
            remote=f"{NODE_HOSTS[0]}:{node_port}",
            transport=sipp_transport,
            local_ip=CALLER,
            local_port=port,
            keys={"did": "15550001000", "contact_port": str(port)},
            calls=calls,
            rate=rate,
            timeout=RUN_TIMEOUT,
            name=f"caller-direct-{transport}-{rate:g}",
            trace=False,
        )
        return caller.wait(RUN_TIMEOUT + 10) == 0
    finally:
        node.stop()


EMULATOR_CALLS = 200
EMULATOR_RATE = 40.0
INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "done", "final": True}]


async def emulator_run(workdir: Path, transport: TransportName) -> tuple[int, float]:
    """EMULATOR_CALLS emulator calls through the edge; (failed calls, edge CPU s per call)."""
    port = free_port(NODE_HOSTS[0])
    setup = EdgeSetup(
        nodes=[f"sip:{NODE_HOSTS[0]}:{port}"],
        tls_dir=write_certificates(workdir / "tls"),
        shm_mb=512,
    )
    edge_dir = workdir / f"edge-emulator-{transport}"
    edge_dir.mkdir()
    node = MediaNode(NODE_HOSTS[0], port, script=NodeScript(infos=INFOS, info_interval=0.0))
    with Edge(edge_dir, setup) as edge:
        async with node:
            target = edge.tls if transport == "tls" else edge.sip
            plan = CallPlan(target=target, transport=transport, local_host=CALLER, timeout=20)
            before = edge.cpu_seconds()
            reports = await run_load(plan, calls=EMULATOR_CALLS, rate=EMULATOR_RATE)
            cpu = (edge.cpu_seconds() - before) / EMULATOR_CALLS
    return sum(not report.ok for report in reports), cpu


def main() -> int:
    print(__doc__.strip().splitlines()[0])
    print(f"runs of {SECONDS_PER_RUN:g} s; a rate passes with 0 failed calls; '+': search cap")
    print(
        f"{'transport':<10}{'direct cps':>12}{'edge cps':>12}{'edge/direct':>13}{'cost':>7}"
        f"{'edge CPU/call':>15}{'cps/core':>10}"
    )
    failed = 0
    for transport in SIPP_TRANSPORTS:
        with tempfile.TemporaryDirectory(prefix=f"ivagate-bench-edge-{transport}-") as tmp:
            workdir = Path(tmp)
            direct = highest_passing_rate(partial(trial, workdir, transport, via_edge=False))
            edge = highest_passing_rate(partial(trial, workdir, transport, via_edge=True))
        ratio = edge / direct if direct else 0.0
        cpu = EDGE_CPU_PER_CALL.get((transport, edge), 0.0)
        capped = "+" if direct >= HIGHEST_RATE else " "
        print(
            f"{transport:<10}{direct:>11.0f}{capped}{edge:>12.0f}{ratio:>13.2f}{1 - ratio:>7.0%}"
            f"{cpu * 1000:>12.2f} ms{1 / cpu if cpu else 0:>10.0f}"
        )
        failed += direct == 0 or edge == 0
    print(f"target: edge cost under {TARGET_COST:.0%} of the direct rate")
    print(
        f"RingCX emulator through the edge, {EMULATOR_CALLS} calls at {EMULATOR_RATE:g}/s, "
        "a new connection per call (TLS: handshake included):"
    )
    for transport in ("tcp", "tls"):
        with tempfile.TemporaryDirectory(prefix=f"ivagate-bench-edge-{transport}-") as tmp:
            bad, cpu = asyncio.run(emulator_run(Path(tmp), transport))
        print(f"  {transport}: {bad} failed calls, edge CPU {cpu * 1000:.2f} ms per call")
        failed += bad > 0
    return 1 if failed else 0
