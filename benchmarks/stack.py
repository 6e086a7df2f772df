"""Full-stack benchmark: RingCX's calls through the edge to a real FreeSWITCH, bot flow by the
controller (a) and by FreeSWITCH's own dialplan (b), in one run.

Every process is real and on loopback: the shipped Kamailio edge (``tests/support/edge.py``),
FreeSWITCH 1.10 on this project's tree started by its ``entrypoint.sh``, and for (a) the
controller (``ivagate run``) with ``BenchBot`` (``controller_bot.py``): answer, one update, the
final intent. For (b) FreeSWITCH runs on a copy of ``freeswitch/`` whose dialplan is
``stack/dialplan.xml``, which does the same with no controller. RingCX is SIPp over UDP
(``stack/caller.xml``: it answers both INFOs with 200 and sends the BYE after the final intent)
and the kit's emulator over TLS (a new connection and handshake per call, SRTP offered).

SIPp steps the rate through RATES, STEP_SECONDS at each, and stops at the first rate with a
failed call (a call not over GRACE seconds after the last one started counts as failed): the
figure is the last rate with none. FreeSWITCH sheds calls beyond its sessions-per-second
setting (IVAGATE_FS_SESSIONS_PER_SECOND, shipped as 150) with a 503, which fails them here.
At that rate: CPU per call of the edge, FreeSWITCH and the controller, and INVITE->200 p50/p99.
The emulator then places EMULATOR_CALLS at EMULATOR_RATE over TLS.

Both callers count the INFOs that reached them before their 200 OK; each fails its call (RingCX
knows no dialog yet) and is counted apart from the capacity failures above, so that the rates
compare capacity. They must be 0 for (a), the flow ivagate ships; for (b) they are printed for
comparison (its INFO leaves FreeSWITCH right after its 200 OK, and may overtake it). Targets:
(a)/(b) >= 0.95, no early INFO in (a), no other failed call of the emulator.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from tests.support.edge import CALLER, Edge, EdgeSetup, start_caller, write_certificates
from tests.support.freeswitch import CONF_DIR, find_binary
from tests.support.fs_node import LiveNode, live_freeswitch

from benchmarks.controller_bot import BenchBot
from benchmarks.ivagate_run import Controller, controller_process, wait_ready
from benchmarks.measure import cpu_seconds, percentile
from ivagate_kit import CallPlan, run_load

__all__ = ["main"]

HERE = Path(__file__).resolve().parent / "stack"
CALLER_SCENARIO = HERE / "caller.xml"
BENCH_DIALPLAN = HERE / "dialplan.xml"
RATES = (50.0, 100.0, 125.0, 150.0, 175.0, 200.0)
STEP_SECONDS = 5.0
GRACE = 5.0
EMULATOR_CALLS = 200
EMULATOR_RATE = 40.0
TARGET_RATIO = 0.95
SETTLE_SECONDS = 40.0
IDLE = 0.05  # CPU seconds per second of all processes under test
RTP_PORTS = 8000  # 4000 calls at once: calls SIPp gave up on stay 32 s (see settle)
EDGE_SHM_MB = 256  # transactions of a few seconds at 200 calls/s, with room
# SIPp's error file line for an unexpected message; before the 200 the scenario is at index <= 4
_UNEXPECTED_INFO = re.compile(r"while expecting '[^']*' \(index (\d+)\), received 'INFO ")
BEFORE_200 = 4
_UNEXPECTED = re.compile(r"unexpected message .*?received '(?:SIP/2\.0 )?(\S+)")


@dataclass
class Step:
    """One SIPp run at one rate."""

    rate: float
    calls: int
    failed: int  # for any reason but an early INFO (503, no answer, no BYE answered...)
    early_infos: int  # INFOs that reached SIPp before its 200 OK (each failed its call)
    reasons: dict[str, int]  # SIPp's failure counters (FailedCallRejected...) that are not 0
    answer_ms: list[float]  # INVITE -> 200, per call
    cpu: dict[str, float]  # process -> CPU seconds per call


@dataclass
class Flow:
    """What one flow, (a) or (b), achieved."""

    name: str
    steps: list[Step] = field(default_factory=list)
    emulator_failed: int = 0
    emulator_early: int = 0
    emulator_answer_ms: list[float] = field(default_factory=list)

    @property
    def best(self) -> Step | None:
        passed = [step for step in self.steps if step.failed == 0]
        return passed[-1] if passed else None

    @property
    def early_infos(self) -> int:
        return sum(step.early_infos for step in self.steps) + self.emulator_early


class Meters:
    """CPU seconds used so far by each process under test, by name."""

    def __init__(self, edge: Edge, freeswitch: LiveNode, controller: Controller | None) -> None:
        assert freeswitch.pid is not None
        self.edge = edge
        self.processes = {"FreeSWITCH": psutil.Process(freeswitch.pid)}
        if controller is not None:
            self.processes["controller"] = controller.stats

    def read(self) -> dict[str, float]:
        return {"edge": self.edge.cpu_seconds()} | {
            name: cpu_seconds(process) for name, process in self.processes.items()
        }

    def settle(self) -> None:
        """Until the processes under test are idle: calls a caller gave up on (an early INFO)
        still run there, FreeSWITCH resending its 200 for 32 s, and would cost the next run."""
        deadline = time.monotonic() + SETTLE_SECONDS
        before = sum(self.read().values())
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = sum(self.read().values())
            if now - before < IDLE:
                return
            before = now


def sipp_totals(workdir: Path) -> dict[str, int]:
    """SIPp's cumulative call counters (``SuccessfulCall``, ``Failed...``), from the last row
    of its statistics file."""
    with (workdir / "stats.csv").open(newline="") as stats:
        rows = list(csv.DictReader(stats, delimiter=";"))
    last = rows[-1] if rows else {}
    return {
        name[:-3]: int(value)
        for name, value in last.items()
        if name.endswith("(C)") and name.startswith(("SuccessfulCall", "Failed"))
    }


def answer_times(workdir: Path) -> list[float]:
    """INVITE -> 200 of every call, ms, from SIPp's response-time file (-trace_rtt)."""
    times = []
    for path in workdir.glob("*_rtt.csv"):
        with path.open(newline="") as rtt:
            rows = csv.DictReader(rtt, delimiter=";")
            times += [float(row["response_time_ms"]) for row in rows if row["rtd_no"] == "1"]
    return times


def sipp_errors(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("sipp-*-errors.log"))


def unexpected(workdir: Path) -> dict[str, int]:
    """The unexpected messages that failed calls, by method or status."""
    found = Counter(f"unexpected {what}" for what in _UNEXPECTED.findall(sipp_errors(workdir)))
    return dict(found.most_common())


def early_infos(workdir: Path) -> int:
    """INFOs SIPp received while still waiting for the INVITE's 200 (each failed its call)."""
    return sum(int(index) <= BEFORE_200 for index in _UNEXPECTED_INFO.findall(sipp_errors(workdir)))


def sipp_step(meters: Meters, workdir: Path, rate: float) -> Step:
    workdir.mkdir()
    calls = round(rate * STEP_SECONDS)
    meters.settle()
    before = meters.read()
    caller = start_caller(
        meters.edge,
        workdir,
        calls=calls,
        rate=rate,
        timeout=STEP_SECONDS + GRACE,
        name="ringcx",
        trace=False,
        scenario=CALLER_SCENARIO,
        # the statistics at the end; every INVITE->200 time (whole ms, in steps of SIPp's clock)
        extra=[
            *("-trace_stat", "-stf", str(workdir / "stats.csv")),
            *("-trace_rtt", "-rtt_freq", "1"),
        ],
    )
    caller.wait(STEP_SECONDS + GRACE + 30)
    after = meters.read()
    early = early_infos(workdir)
    totals = sipp_totals(workdir)
    return Step(
        rate=rate,
        calls=calls,
        # calls still running at the end failed too
        failed=calls - totals.get("SuccessfulCall", 0) - early,
        early_infos=early,
        reasons={k: n for k, n in totals.items() if k.startswith("Failed") and n}
        | unexpected(workdir),
        answer_ms=answer_times(workdir),
        cpu={name: (after[name] - before[name]) / calls for name in after},
    )


async def emulator_run(edge: Edge, flow: Flow) -> None:
    # signalling only, as these figures always were (the kit sends RTP by default)
    plan = CallPlan(target=edge.tls, transport="tls", local_host=CALLER, timeout=20, media=False)
    reports = await run_load(plan, calls=EMULATOR_CALLS, rate=EMULATOR_RATE)
    # an INFO before the 200 finds no dialog yet: the emulator answers 481 and fails this check
    early = [
        sum(c.name == "INFO belongs to the call" and not c.passed for c in report.checks)
        for report in reports
    ]
    flow.emulator_early = sum(early)
    flow.emulator_failed = sum(not r.ok and not n for r, n in zip(reports, early, strict=True))
    flow.emulator_answer_ms = [
        report.answer_after * 1000 for report in reports if report.answer_after is not None
    ]


def bench_tree(workdir: Path) -> Path:
    """A copy of freeswitch/ whose dialplan is the benchmark's (flow b)."""
    tree = Path(shutil.copytree(CONF_DIR, workdir / "freeswitch-dialplan-flow"))
    for shipped in (tree / "dialplan").glob("*.xml"):
        shipped.unlink()
    shutil.copy(BENCH_DIALPLAN, tree / "dialplan" / "bench.xml")
    return tree


@contextmanager
def stack(binary: str, workdir: Path, *, with_controller: bool) -> Iterator[Meters]:
    """FreeSWITCH, the controller (flow a) and the edge, started in that order."""
    with ExitStack() as started:
        conf = CONF_DIR if with_controller else bench_tree(workdir)
        node = started.enter_context(
            live_freeswitch(binary, None, workdir / "fs", conf, rtp_ports=RTP_PORTS)
        )
        controller = None
        if with_controller:
            log = workdir / "controller.log"
            controller = started.enter_context(
                controller_process(node.esl_port, node.esl_password, log, bot=BenchBot)
            )
            wait_ready(controller)
        setup = EdgeSetup(
            nodes=[f"sip:{node.sip}"],
            tls_dir=write_certificates(workdir / "tls"),
            shm_mb=EDGE_SHM_MB,
        )
        (workdir / "edge").mkdir()
        edge = started.enter_context(Edge(workdir / "edge", setup))
        yield Meters(edge, node, controller)


def run_flow(binary: str, workdir: Path, flow: Flow, *, with_controller: bool) -> None:
    workdir.mkdir()
    (workdir / "fs").mkdir()
    with stack(binary, workdir, with_controller=with_controller) as meters:
        for rate in RATES:
            step = sipp_step(meters, workdir / f"sipp-{rate:g}", rate)
            flow.steps.append(step)
            if step.failed:
                break
        meters.settle()
        asyncio.run(emulator_run(meters.edge, flow))


def ms(values: list[float], q: int) -> str:
    if len(values) < 2:
        return "-"
    return f"{percentile(values, q):.1f}"


def report(flows: list[Flow]) -> bool:
    print(
        f"{'flow':<26}{'calls/s':>8}{'edge':>8}{'FS':>8}{'ctrl':>8}"
        f"{'200 p50':>9}{'p99':>7}{'early INFOs':>13}"
    )
    print(f"{'':<26}{'':>8}{'CPU ms per call':^24}{'ms':>9}{'ms':>7}")
    for flow in flows:
        best = flow.best
        cpu = best.cpu if best else {}
        times = best.answer_ms if best else []
        print(
            f"{flow.name:<26}{best.rate if best else 0:>8.0f}"
            + "".join(
                f"{cpu[name] * 1000:>8.2f}" if name in cpu else f"{'-':>8}"
                for name in ("edge", "FreeSWITCH", "controller")
            )
            + f"{ms(times, 50):>9}{ms(times, 99):>7}{flow.early_infos:>13}"
        )
    print("SIPp over UDP, rates tried: calls, failed (other than by an early INFO), early INFOs")
    for flow in flows:
        steps = "; ".join(f"{s.rate:g}/s {s.calls} {s.failed} {s.early_infos}" for s in flow.steps)
        print(f"  {flow.name}: {steps}")
        if flow.steps and flow.steps[-1].failed:
            reasons = ", ".join(f"{k} {n}" for k, n in flow.steps[-1].reasons.items())
            print(f"    SIPp's counters at {flow.steps[-1].rate:g}/s: {reasons}")
    print(f"emulator over TLS, {EMULATOR_CALLS} calls at {EMULATOR_RATE:g}/s:")
    for flow in flows:
        print(
            f"  {flow.name}: {flow.emulator_failed} failed (other than by an early INFO),"
            f" {flow.emulator_early} early INFOs, INVITE->200 p50"
            f" {ms(flow.emulator_answer_ms, 50)} ms, p99 {ms(flow.emulator_answer_ms, 99)} ms"
        )
    a, b = (flow.best.rate if flow.best else 0.0 for flow in flows)
    ratio = a / b if b else 0.0
    controller = flows[0]
    checks = [
        (f"(a)/(b) = {ratio:.2f} (target >= {TARGET_RATIO})", ratio >= TARGET_RATIO),
        (
            f"{controller.name}: {controller.early_infos} INFOs before the 200 OK",
            controller.early_infos == 0,
        ),
        *(
            (f"{flow.name}: emulator {flow.emulator_failed} failed calls", not flow.emulator_failed)
            for flow in flows
        ),
    ]
    for text, passed in checks:
        print(f"{'PASS' if passed else 'MISS'}  {text}")
    return all(passed for _, passed in checks)


def main() -> int:
    binary = find_binary()
    if binary is None:
        print("stack benchmark skipped: no FreeSWITCH found (tests/support/freeswitch.py)")
        return 0
    started = time.monotonic()
    print(__doc__.strip().splitlines()[0])
    flows = [Flow("(a) controller + bot"), Flow("(b) FreeSWITCH dialplan")]
    with tempfile.TemporaryDirectory(prefix="ivagate-bench-stack-") as tmp:
        for flow, with_controller in zip(flows, (True, False), strict=True):
            run_flow(binary, Path(tmp) / flow.name[1], flow, with_controller=with_controller)
    ok = report(flows)
    print(
        f"benchmark time {time.monotonic() - started:.0f} s; load average"
        f" {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    return 0 if ok else 1
