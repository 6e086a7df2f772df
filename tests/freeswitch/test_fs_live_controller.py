"""The controller on a real FreeSWITCH: DTMF both ways, the ready lease, the answer deadline.

Skipped without a real FreeSWITCH (see test_fs_live.py). The caller is the kit's emulator
sending straight to the node, as the edge would relay; the controller runs in this process,
or (for the crash) as ``ivagate run`` killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit import CallPlan, run_call
from support import bots
from support.controller import running_controllers
from support.edge import free_port
from support.fs_node import LiveNode
from support.polling import until

pytestmark = pytest.mark.freeswitch


def plan(node: LiveNode, **options: Any) -> CallPlan:
    """A call to the node as the edge relays it, with plain RTP (the kit's RTP is plain)."""
    did = f"1555{secrets.randbelow(10**7):07d}"
    options.setdefault("headers", {"X-Edge-Transport": "udp"})
    return CallPlan(target=node.sip, transport="udp", did=did, srtp=False, **options)


@pytest.fixture
async def controller_on(live_node: LiveNode) -> AsyncIterator[Callable[..., Awaitable[Controller]]]:
    """``await controller_on(**sections)``: the controller in this process on the live node
    (default bot: demo), returned once it has opened the node's ready gate."""
    port, password = live_node.esl_port, live_node.esl_password
    async with running_controllers(port, password, routing={"default_bot": "demo"}) as start:
        yield start


@pytest.mark.parametrize(
    ("mode", "digit", "intent"), [("info", "1", "Sales"), ("rfc2833", "2", "Support")]
)
async def test_dtmf_as_sip_info_and_as_rfc2833_reaches_the_bot(
    controller_on: Callable[..., Awaitable[Controller]],
    live_node: LiveNode,
    mode: str,
    digit: str,
    intent: str,
) -> None:
    """The demo bot collects one digit: sent as INFO application/dtmf-relay or as RFC 4733
    RTP events, it arrives, and the bot's final intent names it."""
    await controller_on()
    report = await run_call(plan(live_node, dtmf=digit, dtmf_mode=mode, timeout=20))
    assert report.ok, report.render()
    final = report.infos[-1].json
    assert final is not None and (final["digit"], final["intent"]) == (digit, intent), final


async def test_late_answer_fails_once_with_480(
    controller_on: Callable[..., Awaitable[Controller]], live_node: LiveNode
) -> None:
    """A bot slower than call.answer_deadline: the caller gets 480 when the deadline passes
    (not the edge's timeout and a second node), and the call is recorded Failed once."""
    slow = {"answer_deadline": 1.0, "bot_options": {"Slow": {"delay": 3}}}
    controller = await controller_on(call=slow)
    call = plan(live_node, headers={"X-Edge-Transport": "udp", "X-Bot-Id": "Slow"})
    call.expect, call.timeout = 480, 10
    report = await run_call(call)
    assert report.invite_status == 480, report.render()
    assert report.answer_after is not None and 1.0 <= report.answer_after < 3.0
    [ended] = [c for c in controller.calls.all() if c.did == call.did]
    await asyncio.wait_for(ended.wait_ended(), 5)
    record = ended.record
    assert record.outcome is Outcome.FAILED and record.hangup_cause == "NO_ANSWER"
    await until(lambda: bool(bots.Slow.seen), "the bot saw the call end", within=5)
    assert bots.Slow.seen[:1] == ["CallEnded"]


async def ready(node: LiveNode, within: float) -> bool:
    """Whether a call placed now is taken (parked, then answered by the demo bot)."""
    report = await run_call(plan(node, timeout=within, bye=0.1))
    return report.invite_status == 200


def run_controller(node: LiveNode, work: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IVAGATE_ESL__HOST": "127.0.0.1",
        "IVAGATE_ESL__PORT": str(node.esl_port),
        "IVAGATE_ESL__PASSWORD": node.esl_password,
        "IVAGATE_API__PORT": str(free_port("127.0.0.1")),
        "IVAGATE_ROUTING__DEFAULT_BOT": "demo",
        "IVAGATE_LOG__LEVEL": "WARNING",
    }
    ivagate = Path(sys.executable).with_name("ivagate")
    log = (work / "controller.log").open("wb")
    return subprocess.Popen([str(ivagate), "run"], env=env, stdout=log, stderr=log)


async def test_killed_controller_node_answers_503_at_once_within_3_s(
    live_node: LiveNode, tmp_path: Path
) -> None:
    """kill -9 the controller: no drain is sent, yet within 3 s (esl.ready_lease, 2.5 s) a new
    INVITE gets 503 at once instead of being parked for nobody."""
    controller = run_controller(live_node, tmp_path)
    try:
        for _ in range(60):  # the controller starts (a python process) and opens the gate
            if await ready(live_node, 2.0):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "controller.log").read_text())
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        killed = time.monotonic()
        refused = None
        while refused is None and time.monotonic() - killed < 3.0:
            report = await run_call(plan(live_node, expect=503, timeout=0.5))
            if report.invite_status == 503:
                refused = report
        assert refused is not None, "calls were still parked 3 s after the controller died"
        after = time.monotonic() - killed
        print(f"503 {after:.2f} s after kill -9, {refused.answer_after:.3f} s after its INVITE")
        assert refused.answer_after is not None and refused.answer_after < 0.5
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
