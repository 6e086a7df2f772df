"""The emulator against a real SIPp UAS (``sipp -sn uas``): SIPp must accept every message."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import psutil
import pytest
from tests.support.edge import SCENARIOS, SIPP, free_port

from ivagate_kit import CallPlan, CallReport, run_call
from ivagate_kit.transport import TransportName

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(
        not Path(SIPP).exists(), reason=f"SIPp not found at {SIPP}: apt-get install sip-tester"
    ),
]


async def _listening(proc: subprocess.Popen[bytes], port: int, transport: TransportName) -> None:
    """Wait until SIPp has bound its SIP port, so the first INVITE is not refused."""
    kind = "udp" if transport == "udp" else "tcp"
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"sipp exited with {proc.returncode}")
        conns = psutil.Process(proc.pid).net_connections(kind=kind)
        if any(c.laddr and c.laddr.port == port for c in conns):
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("sipp did not bind its port")


def _sipp(
    scenario: list[str], port: int, transport: TransportName, cwd: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SIPP, *scenario, "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()),
         "-t", "u1" if transport == "udp" else "t1", "-m", "1", "-d", "10", "-nostdin",
         "-timeout", "20"],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _call_sipp(
    scenario: list[str], transport: TransportName, cwd: Path, **plan: object
) -> CallReport:
    """One emulated call to a SIPp UAS running ``scenario``; SIPp must exit 0 (call passed)."""
    port = free_port()
    proc = _sipp(scenario, port, transport, cwd)
    try:
        await _listening(proc, port, transport)
        options: dict[str, object] = {"timeout": 5.0, "ping_interval": 0.02, **plan}
        report = await run_call(
            CallPlan(f"127.0.0.1:{port}", transport, **options)  # type: ignore[arg-type]
        )
        _, err = await asyncio.to_thread(proc.communicate, timeout=15)
        assert proc.returncode == 0, err.decode(errors="replace") + report.render()
        return report
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sipp_stock_uas_accepts_the_call(tmp_path: Path) -> None:
    """SIPp's stock UAS completes (exit 0): INVITE, 180, 200, ACK, our BYE, 200."""
    report = await _call_sipp(["-sn", "uas"], "udp", tmp_path, bye=0.05)
    assert report.ok, report.render()
    assert any(what == "180 Ringing (INVITE)" for _, _, what in report.timeline)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_node_infos_and_bye_are_answered(
    transport: TransportName, tmp_path: Path
) -> None:
    """SIPp as media node (the edge tests' scenario): its INFOs and BYE get 200 from us."""
    scenario = ["-sf", str(SCENARIOS / "uas_answer.xml")]
    report = await _call_sipp(scenario, transport, tmp_path, bye="never")
    assert report.ok, report.render()
    assert [i.json for i in report.infos] == [{"n": 1}, {"intent": "done", "final": True}]
    assert report.bye_from_remote and report.contact_attempts == 0
