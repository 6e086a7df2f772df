"""run_call against the stand-in MediaNode over UDP, TCP and TLS: every check, both ways."""

from __future__ import annotations

import asyncio

import pytest

from ivagate_kit import CallPlan, CallReport, run_call
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.transport import TransportName

TRANSPORTS: list[TransportName] = ["udp", "tcp", "tls"]
INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "Technical Support", "final": True}]


async def _call(
    script: NodeScript,
    transport: TransportName = "udp",
    *,
    last: str = "",
    replies: int = 0,
    **plan: object,
) -> tuple[CallReport, MediaNode]:
    """One call to a fresh node, stopped once it got the ``last`` request and ``replies``."""
    async with MediaNode(transport=transport, script=script) as node:
        options: dict[str, object] = {"ping_interval": 0.02, "timeout": 5.0, **plan}
        report = await run_call(
            CallPlan(f"127.0.0.1:{node.port}", transport, **options)  # type: ignore[arg-type]
        )
        if last:
            await node.wait_for(last)
        await node.wait_until(lambda: len(node.responses) >= replies)
    return report, node


def _failed(report: CallReport) -> list[str]:
    return [c.name for c in report.checks if not c.passed]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_full_call_passes_every_check(transport: TransportName) -> None:
    """INVITE, 200, two INFOs, BYE after the final intent: every check passes."""
    script = NodeScript(infos=INFOS, info_interval=0.05, early=[180, 183])
    report, node = await _call(script, transport, last="BYE", headers={"X-Bot-Id": "demo"})
    assert report.ok, report.render()
    assert report.invite_status == 200 and report.bye_status == 200
    assert [i.json for i in report.infos] == INFOS
    assert report.contact_attempts == 0 and not report.bye_from_remote
    (invite,) = node.invites
    assert invite.headers["x-bot-id"] == "demo"
    assert ("a=crypto:" in invite.body) == (transport == "tls")
    assert ("RTP/SAVP" in invite.body) == (transport == "tls")
    assert [r.method for r in node.requests] == ["INVITE", "ACK", "BYE"]
    assert [r.status for r in node.responses] == [200, 200]  # the two INFOs
    if transport != "udp":
        assert report.pings_sent > 0 and node.agent.pings_received > 0
        assert not any("retransmit" in what for _, _, what in report.timeline)


async def test_srtp_can_be_offered_on_udp() -> None:
    """srtp=True offers RTP/SAVP on UDP too, and the SRTP answer is checked."""
    report, node = await _call(NodeScript(infos=INFOS[1:]), srtp=True)
    assert report.ok, report.render()
    assert "RTP/SAVP" in node.invites[0].body


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_error_answer_is_acked_and_fails_the_default_expectation(
    transport: TransportName,
) -> None:
    """A 503 is ACKed; the call fails with expect=200 and passes with expect=503."""
    report, node = await _call(NodeScript(answer=503), transport, last="ACK")
    assert report.invite_status == 503 and not report.ok
    assert _failed(report) == ["INVITE final status is 200"]
    assert [r.method for r in node.requests] == ["INVITE", "ACK"]
    report, _ = await _call(NodeScript(answer=503), transport, expect=503)
    assert report.ok, report.render()


async def test_hanging_node_times_out_and_is_cancelled() -> None:
    """A node stuck at 100 Trying: no final status, CANCEL sent, the 487 ACKed."""
    report, node = await _call(NodeScript(answer="hang"), "tcp", last="ACK", timeout=0.3)
    assert report.invite_status is None and not report.ok
    assert [r.method for r in node.requests] == ["INVITE", "CANCEL", "ACK"]


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [("text/plain", '{"final": true}', 415), ("application/json", "[1, 2]", 400)],
)
async def test_bad_info_is_refused_and_fails_its_check(
    content_type: str, body: str, status: int
) -> None:
    """An INFO that is not a JSON object sent as application/json gets 415/400 and a FAIL."""
    script = NodeScript(infos=[body], info_content_type=content_type, bye_after=0.0)
    report, node = await _call(script, bye="never", replies=1)
    assert node.responses[0].status == status
    assert _failed(report) == ["INFO #1 is a JSON object sent as application/json"]
    assert report.infos[0].json is None and report.infos[0].body == body


async def test_bye_after_seconds() -> None:
    """bye=seconds hangs up that long after the 200 OK, without waiting for a final intent."""
    report, node = await _call(NodeScript(), "tcp", last="BYE", bye=0.05)
    assert report.ok, report.render()
    assert node.requests[-1].method == "BYE" and report.bye_status == 200


async def test_bye_never_waits_for_the_far_end() -> None:
    """bye='never' sends no BYE; the node's BYE is answered 200 and recorded."""
    script = NodeScript(infos=INFOS, bye_after=0.0)
    report, node = await _call(script, "tls", replies=3, bye="never")
    assert report.ok, report.render()
    assert report.bye_from_remote and report.bye_status is None
    assert "BYE" not in [r.method for r in node.requests]
    assert node.responses[-1].summary() == "200 OK (BYE)"


async def test_missing_final_intent_fails_and_still_hangs_up() -> None:
    """No INFO with final: true within the timeout fails that check; BYE is sent anyway."""
    report, node = await _call(NodeScript(infos=[{"n": 1}]), last="BYE", timeout=0.3)
    assert _failed(report) == ["final intent received (INFO with final: true)"]
    assert node.requests[-1].method == "BYE"


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_request_to_the_contact_address_fails_the_call(transport: TransportName) -> None:
    """A node that opens a new connection to the Contact (as FreeSWITCH alone does) is caught."""
    script = NodeScript(infos=INFOS, info_interval=0.0, reuse_connection=False)
    report, _ = await _call(script, transport, timeout=0.5)
    assert report.contact_attempts == 1
    assert "nothing reached the Contact address" in _failed(report)
    assert report.infos == []


async def test_connection_refused_is_a_failed_check() -> None:
    """Nothing listening at the target: one failed check naming the error, no exception."""
    async with MediaNode(transport="tcp") as node:
        port = node.port
    report = await run_call(CallPlan(f"127.0.0.1:{port}", "tcp", timeout=2))
    assert not report.ok and report.invite_status is None
    assert report.checks[0].name == "connect to the target"
    assert "Connect" in report.checks[0].detail or "refused" in report.checks[0].detail


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refreshes_mid_call_retarget_the_node(transport: TransportName) -> None:
    """A re-INVITE and an UPDATE once answered: both 200, the re-INVITE's answer fits and is
    ACKed, each carries the INVITE's Contact, and the node's INFOs after them still arrive."""
    script = NodeScript(infos=INFOS, info_interval=0.3)
    report, node = await _call(script, transport, last="BYE", refresh=["reinvite", "update"])
    assert report.ok, report.render()
    names = [c.name for c in report.checks]
    assert "re-INVITE #1 answered 200" in names and "UPDATE #2 answered 200" in names
    assert "re-INVITE #1: SDP answer fits the offer" in names
    in_dialog = [r for r in node.requests if r.to.tag]
    assert [r.method for r in in_dialog] == ["ACK", "INVITE", "ACK", "UPDATE", "BYE"]
    contact = node.invites[0].headers["Contact"]
    assert all(r.headers["Contact"] == contact for r in in_dialog if r.method != "ACK")
    assert [i.json for i in report.infos] == INFOS


@pytest.mark.parametrize(
    "bad",
    [
        {"transport": "sctp"},
        {"bye": "later"},
        {"bye": -1.0},
        {"timeout": 0},
        {"target": "host:port"},
        {"refresh": ["reinvite", "hold"]},
    ],
)
def test_bad_plan_is_refused(bad: dict[str, object]) -> None:
    """Invalid plan values raise ValueError before any packet is sent."""
    options: dict[str, object] = {"target": "127.0.0.1:5060", **bad}
    with pytest.raises(ValueError):
        CallPlan(**options)  # type: ignore[arg-type]


def test_target_port_defaults_by_transport() -> None:
    """A target without a port means 5060, or 5061 on TLS; IPv6 literals keep their colons."""
    assert CallPlan("edge.example").address == ("edge.example", 5060)
    assert CallPlan("edge.example", "tls").address == ("edge.example", 5061)
    assert CallPlan("[::1]:5070").address == ("::1", 5070)


@pytest.mark.timeout(20)  # waiting out the plan's 30 s would be the bug
async def test_connection_closed_by_the_far_end_ends_the_wait() -> None:
    """A peer that closes the TCP connection on INVITE: no status, named reason, no waiting."""

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        report = await run_call(CallPlan(f"127.0.0.1:{port}", "tcp", timeout=30))
    assert report.invite_status is None
    assert report.checks[0].detail == "connection closed before a final response"


@pytest.mark.parametrize("bad", [{"answer": 100}, {"answer": "ring"}, {"early": [200]}])
def test_bad_node_script_is_refused(bad: dict[str, object]) -> None:
    """A script that cannot be played (1xx answer, unknown answer, 2xx early) raises ValueError."""
    with pytest.raises(ValueError):
        NodeScript(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_info_right_behind_the_200_belongs_to_the_call(transport: TransportName) -> None:
    """An INFO sent at once after the 200 (before the ACK, as FreeSWITCH's own dialplan does)
    is read as part of the dialog the 200 made, however late the caller's coroutine resumes;
    the only failed checks are those that say it overtook the ACK (RingCX may refuse it)."""
    script = NodeScript(infos=INFOS, info_interval=0.0, info_before_ack=True)
    report, _ = await _call(script, transport, last="BYE")
    assert [i.json for i in report.infos] == INFOS, report.render()
    failed = [check.name for check in report.checks if not check.passed]
    assert all(name.endswith("came after our ACK") for name in failed), report.render()
