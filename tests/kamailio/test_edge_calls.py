"""Calls through the real edge with SIPp on both sides: headers, routing, connection reuse."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.edge import (
    CALLER,
    NODE_HOSTS,
    ConnectionSpy,
    Edge,
    free_port,
    start_caller,
    start_node,
)

pytestmark = [pytest.mark.kamailio, pytest.mark.sipp]


def header(message: str, name: str) -> list[str]:
    """Values of every ``name`` header line in a SIP message's head."""
    head = message.partition("\n\n")[0]
    prefix = name.lower() + ":"
    return [
        line.split(":", 1)[1].strip()
        for line in head.splitlines()
        if line.lower().startswith(prefix)
    ]


def body(message: str) -> str:
    return message.partition("\n\n")[2].strip()


def test_udp_call_reaches_node_with_edge_headers(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """UDP: the edge sets X-Edge-* (forged ones go), two Record-Routes, SDP untouched."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(nodes=[f"sip:{NODE_HOSTS[0]}:{port}"])
    node = start_node(tmp_path, port)
    caller = start_caller(edge, tmp_path)
    assert caller.wait() == 0, caller.text() + edge.log()
    assert node.wait(10) == 0, node.text()

    [sent] = caller.received("INVITE", sent=True)
    [invite] = node.received("INVITE")
    assert header(invite, "X-Edge-Transport") == ["udp"]
    [source] = header(invite, "X-Edge-Source")
    assert source.startswith(f"{CALLER}:")
    assert header(sent, "X-Edge-Source") == ["6.6.6.6:666"]  # the forged one never passes
    assert len(header(invite, "Record-Route")) == 2
    assert body(invite) == body(sent)
    # the node's INFOs and BYE reached the caller along the Record-Route set
    assert len(caller.received("INFO")) == 2
    assert len(caller.received("BYE")) == 1


def test_tcp_in_dialog_requests_reuse_callers_connection(
    start_edge: Callable[..., Edge], tmp_path: Path, contact_spy: ConnectionSpy
) -> None:
    """TCP: node INFOs and BYE ride the caller's connection; its Contact is never dialled."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(nodes=[f"sip:{NODE_HOSTS[0]}:{port}"])
    node = start_node(tmp_path, port)
    caller = start_caller(edge, tmp_path, transport="t1", contact_port=contact_spy.port)
    assert caller.wait() == 0, caller.text() + edge.log()
    assert node.wait(10) == 0, node.text()

    [invite] = node.received("INVITE")
    assert header(invite, "X-Edge-Transport") == ["tcp"]
    # the Contact carries the alias of the caller's connection ...
    assert ";alias=" in header(invite, "Contact")[0]
    # ... which the edge turns back into that connection and strips from the R-URI
    infos = caller.received("INFO")
    assert len(infos) == 2
    assert all(";alias=" not in info.splitlines()[0] for info in infos)
    assert len(caller.received("BYE")) == 1
    assert "TCP message received" in caller.messages()
    assert contact_spy.attempts == []


def connection_of(invite: str) -> tuple[str, int]:
    """The caller's end of its TCP connection, from the alias the edge put on its Contact."""
    [contact] = header(invite, "Contact")
    match = re.search(r";alias=([^~;>]+)~(\d+)~", contact)
    assert match, contact
    return match[1], int(match[2])


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def test_request_to_a_vanished_caller_fails_without_dialling_it(
    start_edge: Callable[..., Edge], tmp_path: Path, contact_spy: ConnectionSpy
) -> None:
    """RingCX's TCP connection gone: the node's INFO fails, logged; the edge opens no new
    connection, neither to the Contact nor to where the old one came from (a live listener
    there now, which would accept one)."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(nodes=[f"sip:{NODE_HOSTS[0]}:{port}"])
    node = start_node(tmp_path, port, pause_ms=3000)
    caller = start_caller(edge, tmp_path, transport="t1", contact_port=contact_spy.port)
    wait_for(lambda: node.received("ACK"))
    caller.stop()  # SIPp dies; the kernel closes its TCP connection
    [invite] = node.received("INVITE")
    old_connection = ConnectionSpy(*connection_of(invite))
    try:
        node.wait(20)
        replies = node.received("SIP/2.0")
        assert replies, node.messages()
        assert not replies[-1].startswith("SIP/2.0 200"), replies[-1]
        assert "cannot relay INFO" in edge.log()
        assert old_connection.attempts == []
        assert contact_spy.attempts == []
    finally:
        old_connection.close()


def test_reply_to_a_vanished_caller_opens_no_connection(
    start_edge: Callable[..., Edge], tmp_path: Path, contact_spy: ConnectionSpy
) -> None:
    """RingCX's TCP connection gone before its INVITE is answered: the edge's final reply
    (503 once the node times out) is not sent over a new connection to where it came from."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(
        nodes=[f"sip:{NODE_HOSTS[0]}:{port}"], defines={"MEDIA_ANSWER_TIMEOUT": "1500"}
    )
    node = start_node(tmp_path, port, scenario="uas_hang")
    caller = start_caller(edge, tmp_path, transport="t1", contact_port=contact_spy.port)
    wait_for(lambda: node.received("INVITE"))
    caller.stop()
    [invite] = node.received("INVITE")
    old_connection = ConnectionSpy(*connection_of(invite))
    try:
        assert node.wait(10) == 0, node.text()  # CANCELled by the edge's answer timer
        wait_for(lambda: "every media node failed" in edge.log())
        time.sleep(0.5)  # the 503 is sent right after that line
        assert old_connection.attempts == []
        assert contact_spy.attempts == []
    finally:
        old_connection.close()
