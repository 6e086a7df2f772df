"""A real FreeSWITCH behind the real edge, driven by the controller: a bot's back-to-back
INFOs reach RingCX (the emulator, over UDP) in order and after RingCX's ACK, and the
controller's record carries RingCX's answer to each, reported by the edge (issues 15, 12).

Skipped unless a FreeSWITCH is found (tests/support/freeswitch.py); needs Kamailio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.support.edge import CALLER, EDGE_HOST, REPORT_TOKEN, Edge, EdgeSetup

from ivagate.bots.base import Outcome
from ivagate.calls.records import CallRecord
from ivagate.controller import Controller
from ivagate.settings import Settings
from ivagate_kit import CallPlan, run_call
from support.fs_node import LiveNode

pytestmark = [pytest.mark.freeswitch, pytest.mark.kamailio]

SENT = [
    {"n": 1},
    {"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'},
    {"intent": "Sales", "final": True},
]  # what support.bots.TwoUpdates sends, back to back


@pytest.fixture
def edge(live_node: LiveNode, tmp_path: Path) -> Iterator[Edge]:
    edge = Edge(tmp_path, EdgeSetup(nodes=[f"sip:{live_node.sip}"], tls=False)).start()
    yield edge
    edge.stop()


@pytest.fixture
async def controller(live_node: LiveNode, edge: Edge) -> AsyncIterator[Controller]:
    node_ip = live_node.sip.rpartition(":")[0]
    settings = Settings(
        esl={"host": "127.0.0.1", "port": live_node.esl_port, "password": live_node.esl_password},
        routing={"bot_header": "X-Bot-Id"},
        call={"bots": {"TwoUpdates": "support.bots:TwoUpdates"}},
        edge={
            "listen": f"{node_ip}:{edge.report_port}",
            "edges": [EDGE_HOST],
            "token": REPORT_TOKEN,
        },
    )
    controller = Controller(settings)
    await controller.start()
    for _ in range(300):
        if controller.ready:
            break
        await asyncio.sleep(0.1)
    yield controller
    await controller.stop()


async def record_of(controller: Controller, call_id: str) -> CallRecord:
    for _ in range(200):
        call = controller.calls.get(call_id)
        if call is not None and call.record.outcome is not None:
            return call.record
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} did not end on the controller")


@pytest.mark.parametrize(("answer", "outcome"), [(200, Outcome.SUCCESS), (481, Outcome.FAILED)])
async def test_infos_arrive_in_order_after_the_ack_and_their_answers_are_recorded(
    controller: Controller, edge: Edge, answer: int, outcome: Outcome
) -> None:
    assert controller.ready
    plan = CallPlan(
        target=edge.sip,
        transport="udp",
        local_host=CALLER,
        headers={"X-Bot-Id": "TwoUpdates"},
        timeout=20,
        info_answer=answer,
        ack_delay=0.3,  # RingCX's ACK late: the bot's first INFO must wait for it at the edge
    )
    report = await run_call(plan)
    assert [info.json for info in report.infos] == SENT, report.to_dict()
    after_ack = [check for check in report.checks if "after our ACK" in check.name]
    assert len(after_ack) == 3 and all(check.passed for check in after_ack), after_ack
    record = await record_of(controller, report.call_id)
    assert [(info.result, info.sip_status) for info in record.infos] == [("reply", answer)] * 3
    assert record.outcome is outcome
    if answer != 200:
        assert record.error is not None and f"RingCX answered {answer}" in record.error
