"""Edge benchmark: the highest call rate with no failed call, through the edge and direct.

SIPp plays RingCX (uac_call.xml: INVITE, ACK, two INFOs and a BYE from the node) against a
SIPp media node (uas_answer.xml), once through the shipped Kamailio edge and once straight
to the node, over TCP (one connection, as RingCX keeps) and over UDP. Debian's SIPp has no
TLS, so TLS itself is not in these figures; the edge's TLS path is covered by the tests.
A rate passes when every one of its calls completes; the search doubles the rate until a
run fails, then bisects. Figures are calls per second on this machine, both paths measured
in the same run, and the edge's cost as a share of the direct rate (target: under 10 %).
"""

from __future__ import annotations

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
)

__all__ = ["main"]

SECONDS_PER_RUN = 4.0
FIRST_RATE = 50.0
HIGHEST_RATE = 3200.0
BISECT_STEPS = 3
TARGET_COST = 0.10
SIPP_TRANSPORTS = {"tcp": "t1", "udp": "u1"}


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
                caller = start_caller(
                    edge,
                    workdir,
                    transport=sipp_transport,
                    calls=calls,
                    rate=rate,
                    timeout=60,
                    name=f"caller-edge-{transport}-{rate:g}",
                    trace=False,
                )
                return caller.wait(90) == 0
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
            timeout=60,
            name=f"caller-direct-{transport}-{rate:g}",
            trace=False,
        )
        return caller.wait(90) == 0
    finally:
        node.stop()


def main() -> int:
    print(__doc__.strip().splitlines()[0])
    print(f"runs of {SECONDS_PER_RUN:g} s; a rate passes with 0 failed calls")
    print(f"{'transport':<10}{'direct cps':>12}{'edge cps':>12}{'edge/direct':>13}{'cost':>8}")
    failed = 0
    for transport in SIPP_TRANSPORTS:
        with tempfile.TemporaryDirectory(prefix=f"ivagate-bench-edge-{transport}-") as tmp:
            workdir = Path(tmp)
            direct = highest_passing_rate(partial(trial, workdir, transport, via_edge=False))
            edge = highest_passing_rate(partial(trial, workdir, transport, via_edge=True))
        ratio = edge / direct if direct else 0.0
        cost = 1 - ratio
        verdict = "ok" if cost < TARGET_COST else "over target"
        print(f"{transport:<10}{direct:>12.0f}{edge:>12.0f}{ratio:>13.2f}{cost:>7.0%} {verdict}")
        failed += direct == 0 or edge == 0
    return 1 if failed else 0
