"""RingCX-emulator calls through the real edge over TLS and TCP: SRTP offer, connection reuse,
CRLF pings, a 16 KB INFO, a TLS hop to the media node."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from tests.support.edge import CALLER, NODE_HOSTS, Edge, emulator_plan, free_port

from ivagate_kit import run_call
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.transport import TransportName

pytestmark = [pytest.mark.kamailio]

INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "done", "final": True}]


def node_at(transport: TransportName = "udp", **script: object) -> MediaNode:
    port = free_port(NODE_HOSTS[0])
    return MediaNode(NODE_HOSTS[0], port, transport, NodeScript(**script))  # type: ignore[arg-type]


def node_uri(node: MediaNode) -> str:
    suffix = "" if node.transport == "udp" else f";transport={node.transport}"
    return f"sip:{node.host}:{node.requested_port}{suffix}"


async def test_tls_call_with_srtp_offer_reaches_node_untouched(
    start_edge: Callable[..., Edge],
) -> None:
    """A TLS call offering SDES-SRTP reaches the node with its SDP as sent and X-Edge-*; the
    caller's 440 Hz tone comes back from the node (an echo) over SRTP with the keys exchanged
    through the edge."""
    node = node_at(infos=INFOS, bye_after=None)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        plan = emulator_plan(edge, "tls", headers={"X-Edge-Transport": "udp"}, play="tone:440")
        report = await run_call(plan)
    assert report.ok, report.to_dict()
    assert report.media is not None and report.media.srtp and report.media.srtp_failures == 0
    assert report.media.heard_seconds > 0.1 and report.media.tone_power[440] > 0.95
    [invite] = node.invites
    assert invite.headers["X-Edge-Transport"] == "tls"
    assert invite.headers["X-Edge-Source"].startswith(f"{CALLER}:")
    sdp = invite.body.decode() if isinstance(invite.body, bytes) else invite.body
    assert "RTP/SAVP" in sdp and "a=crypto:" in sdp
    assert f"c=IN IP4 {CALLER}" in sdp  # media flows to RingCX directly: not rewritten
    assert [info.json for info in report.infos] == INFOS


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_node_requests_ride_the_callers_connection(
    start_edge: Callable[..., Edge], transport: TransportName
) -> None:
    """Node INFOs and BYE ride the caller's TCP/TLS connection; its Contact sees nothing."""
    node = node_at(infos=INFOS, bye_after=0.2)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, transport, bye="never"))
    assert report.ok, report.to_dict()
    assert len(report.infos) == 2
    assert report.bye_from_remote
    assert report.contact_attempts == 0


async def test_crlf_pings_keep_the_call_and_connection(start_edge: Callable[..., Edge]) -> None:
    """RFC 5626 CRLF pings every 0.2 s over TLS break nothing; the edge answers them."""
    node = node_at(infos=[{"n": i} for i in range(4)], info_interval=0.5, bye_after=0.2)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, "tls", bye="never", ping_interval=0.2))
    assert report.ok, report.to_dict()
    assert report.pings_sent >= 5
    assert report.pongs_received >= 1
    assert len(report.infos) == 4 and report.bye_from_remote


@pytest.mark.parametrize("node_transport", ["udp", "tcp", "tls"])
async def test_16k_info_over_tls_arrives_whole(
    start_edge: Callable[..., Edge], node_transport: TransportName
) -> None:
    """A 16 KB JSON INFO from the node (over UDP, TCP or TLS) reaches the TLS caller whole."""
    payload = {"intent": "large", "final": True, "data": "x" * (16 * 1024 - 48)}
    assert len(json.dumps(payload)) >= 16 * 1024 - 16
    node = node_at(node_transport, infos=[payload], bye_after=None)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, "tls"))
    assert report.ok, report.to_dict()
    assert [info.json for info in report.infos] == [payload]


async def test_tls_hop_to_the_media_node(start_edge: Callable[..., Edge]) -> None:
    """A node listed with ;transport=tls gets the call over TLS; its requests reach the caller."""
    node = node_at("tls", infos=INFOS, bye_after=None)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, "tls"))
    assert report.ok, report.to_dict()
    assert node.invites[0].headers["X-Edge-Transport"] == "tls"
    assert len(report.infos) == 2


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_node_requests_ride_the_connection_after_a_refresh(
    start_edge: Callable[..., Edge], transport: TransportName
) -> None:
    """A re-INVITE and an UPDATE from RingCX (its plain Contact) become the node's remote
    target; the INFOs after them still ride RingCX's connection, never its Contact."""
    node = node_at(infos=INFOS, info_interval=0.5, bye_after=None)
    edge = start_edge(nodes=[node_uri(node)])
    async with node:
        report = await run_call(emulator_plan(edge, transport, refresh=["reinvite", "update"]))
    assert report.ok, report.render()
    refreshes = [r for r in node.requests if r.method in ("INVITE", "UPDATE") and r.to.tag]
    assert [r.method for r in refreshes] == ["INVITE", "UPDATE"]
    assert all(";alias=" in r.headers["Contact"] for r in refreshes)
    assert [info.json for info in report.infos] == INFOS
    assert report.contact_attempts == 0
