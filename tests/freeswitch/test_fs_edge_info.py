"""A real FreeSWITCH behind the real edge, driven by the controller: a bot's back-to-back
INFOs reach RingCX (the emulator, over UDP) in order and after RingCX's ACK, and the
controller's record carries RingCX's answer to each, reported by the edge (issues 15, 12).

Skipped unless a FreeSWITCH is found (tests/support/freeswitch.py); needs Kamailio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit import CallPlan, run_call
from support.controller import record_of, running_controllers
from support.edge import CALLER, Edge, EdgeSetup
from support.fs_node import LiveNode

pytestmark = [pytest.mark.freeswitch, pytest.mark.kamailio]

SENT = [
    {"n": 1},
    {"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'},
    {"intent": "Sales", "final": True},
]  # what support.bots.TwoUpdates sends, back to back


@pytest.fixture
def edge(live_node: LiveNode, tmp_path: Path) -> Iterator[Edge]:
    edge = Edge(tmp_path, EdgeSetup(nodes=[live_node.uri], tls=False)).start()
    yield edge
    edge.stop()


@pytest.fixture
async def controller(live_node: LiveNode, edge: Edge) -> AsyncIterator[Controller]:
    """The controller on the live node, taking the edge's reports of RingCX's answers."""
    async with running_controllers(live_node.esl_port, live_node.esl_password) as start:
        yield await start(edge=edge.reports_to(live_node.host))


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
    record = await record_of(controller, report)
    assert [(info.result, info.sip_status) for info in record.infos] == [("reply", answer)] * 3
    assert record.outcome is outcome
    if answer != 200:
        assert record.error is not None and f"RingCX answered {answer}" in record.error
