"""RingCX's answers to the media nodes' INFOs, reported by the real edge (issue 15), and the
ACK gate: no request from a node reaches RingCX before RingCX's ACK (issue 12).

The stand-in node sends the INFOs; the RingCX emulator answers them as told
(``info_answer``) and flags an INFO that comes before its ACK; the controller's own report
listener (``ivagate.edge_reports``), on the node's address, collects the reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr
from test_edge_emulator import node_at, node_uri
from tests.support.edge import EDGE_HOST, NODE_HOSTS, REPORT_TOKEN, Edge, emulator_plan

from ivagate.calls.records import EdgeReport
from ivagate.calls.registry import CallRegistry
from ivagate.edge_reports import EdgeReports
from ivagate.metrics import Metrics
from ivagate.settings import EdgeSettings
from ivagate_kit import run_call
from ivagate_kit.transport import TransportName

pytestmark = [pytest.mark.kamailio]

INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "done", "final": True}]


class Collected(EdgeReports):
    """The controller's report listener, keeping what it receives instead of finding calls."""

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__(settings, CallRegistry(), Metrics())
        self.reports: list[EdgeReport] = []

    def deliver(self, report: EdgeReport) -> None:
        self.reports.append(report)


@asynccontextmanager
async def reports_from(
    edge: Edge, edges: tuple[str, ...] = (EDGE_HOST,), token: str = REPORT_TOKEN
) -> AsyncIterator[Collected]:
    """The first node's controller, listening where the edge sends that node's reports."""
    listen = f"{NODE_HOSTS[0]}:{edge.report_port}"
    client = Collected(EdgeSettings(listen=listen, edges=list(edges), token=SecretStr(token)))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("answer", [200, 481, 500])
async def test_each_info_answer_is_reported_to_the_nodes_controller(
    start_edge: Callable[..., Edge], transport: TransportName, answer: int
) -> None:
    """One report per INFO, in order: RingCX's status, the INFO's CSeq and Call-ID, and the
    time the edge waited for the answer. The edge read its token from kamailio-local.cfg: no
    process shows it in ``ps``."""
    node = node_at(infos=INFOS, info_interval=0.05, bye_after=0.1)
    edge = start_edge(nodes=[node_uri(node)])
    async with node, reports_from(edge) as client:
        report = await run_call(emulator_plan(edge, transport, bye="never", info_answer=answer))
        await asyncio.sleep(0.2)
    assert len(report.infos) == 2
    assert [(r.end, r.status, r.call_id) for r in client.reports] == [
        ("reply", answer, report.call_id)
    ] * 2
    first, second = client.reports
    assert first.cseq < second.cseq
    assert 0 <= first.ended - first.sent < 1.0
    assert [response.status for response in node.responses][:2] == [answer, answer]
    assert [line for line in edge.command_lines() if REPORT_TOKEN in line] == []


async def test_unanswered_info_is_reported_as_timeout(start_edge: Callable[..., Edge]) -> None:
    """RingCX never answers (UDP: the edge retransmits, then gives up): end timeout, 408."""
    node = node_at(infos=INFOS[:1], bye_after=0.1)
    edge = start_edge(nodes=[node_uri(node)], defines={"INFO_REPLY_TIMEOUT": "1000"})
    async with node, reports_from(edge) as client:
        await run_call(emulator_plan(edge, "udp", bye="never", info_answer="never"))
    [timeout] = client.reports
    assert (timeout.end, timeout.status) == ("timeout", 408)
    assert 0.9 <= timeout.ended - timeout.sent < 2.0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_node_request_waits_for_ringcx_ack(
    start_edge: Callable[..., Edge], transport: TransportName
) -> None:
    """The node sends its INFO right after its 200 OK, and RingCX's ACK is 0.3 s late: the
    INFO reaches RingCX after the ACK all the same (the emulator checks it)."""
    node = node_at(infos=INFOS, info_interval=0.0, info_before_ack=True, bye_after=0.1)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, transport, bye="never", ack_delay=0.3))
    assert report.ok, report.to_dict()
    assert len(report.infos) == 2


async def test_no_ack_within_ack_wait_refuses_the_info(start_edge: Callable[..., Edge]) -> None:
    """RingCX's ACK comes after ACK_WAIT (1 s): the INFO is not sent, the node gets 500, the
    controller a no-ack report; the call's BYE still goes through."""
    node = node_at("tcp", infos=INFOS[:1], info_interval=0.0, info_before_ack=True, bye_after=0.1)
    edge = start_edge(nodes=[node_uri(node)], defines={"ACK_WAIT": "1"})
    async with node, reports_from(edge) as client:
        report = await run_call(emulator_plan(edge, "tcp", bye="never", ack_delay=2.5))
    assert report.infos == []
    assert report.bye_from_remote
    assert node.responses[0].status == 500
    assert [(r.end, r.status, r.reason) for r in client.reports] == [
        ("no-ack", 500, "No ACK from RingCX")
    ]


@pytest.mark.parametrize(
    ("edges", "token"),
    [((EDGE_HOST,), "wrong-token"), (("127.0.0.9",), REPORT_TOKEN)],
    ids=["wrong-token", "not-an-edge"],
)
async def test_reports_count_only_from_an_edge_with_the_token(
    start_edge: Callable[..., Edge], edges: tuple[str, ...], token: str
) -> None:
    """Lines with another token, or a connection from an address not in edge.edges: nothing
    is taken; the INFOs themselves are not affected."""
    node = node_at(infos=INFOS, bye_after=0.1)
    edge = start_edge(nodes=[node_uri(node)])
    async with node, reports_from(edge, edges, token) as client:
        report = await run_call(emulator_plan(edge, "udp", bye="never"))
        await asyncio.sleep(0.2)
    assert report.ok, report.to_dict()
    assert client.reports == []
