"""Media-node selection: failover on a dead, refusing or hung node; probing; drain over RPC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.edge import NODE_HOSTS, Edge, free_port, start_caller, start_node

from ivagate_kit.media_node import MediaNode, NodeScript

pytestmark = [pytest.mark.kamailio, pytest.mark.sipp]

# in order of priority (DS_ALG 8), short timers so failover happens within a test
FAST = {"DS_ALG": "8", "MEDIA_REPLY_TIMEOUT": "1000", "MEDIA_ANSWER_TIMEOUT": "1500"}


def nodes(count: int) -> list[tuple[str, int]]:
    return [(host, free_port(host)) for host in NODE_HOSTS[:count]]


def uris(addresses: list[tuple[str, int]]) -> list[str]:
    return [f"sip:{host}:{port}" for host, port in addresses]


def wait_for_flags(edge: Edge, uri: str, flags: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while edge.node_flags().get(uri) != flags:
        assert time.monotonic() < deadline, f"{uri} never became {flags}: {edge.node_flags()}"
        time.sleep(0.1)


def test_dead_node_fails_over_and_leaves_rotation_after_strikes(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """A silent first node: calls land on the second; after DS_STRIKES misses it leaves rotation."""
    (dead, live) = nodes(2)
    edge = start_edge(nodes=uris([dead, live]), defines={**FAST, "DS_STRIKES": "2"})
    dead_uri = uris([dead])[0]
    node = start_node(tmp_path, live[1], host=live[0], calls=2)
    first = start_caller(edge, tmp_path, name="first")
    assert first.wait() == 0, first.text() + edge.log()
    assert edge.node_flags()[dead_uri] == "TP"  # one strike: still in rotation, probed
    second = start_caller(edge, tmp_path, name="second")
    assert second.wait() == 0, second.text() + edge.log()
    assert edge.node_flags()[dead_uri] == "IP"  # inactive until it answers a probe
    assert node.wait(10) == 0
    assert len(node.received("INVITE")) == 2


@pytest.mark.parametrize("status", [503, 500, 408])
async def test_refusing_node_fails_over_to_next(
    start_edge: Callable[..., Edge], tmp_path: Path, status: int
) -> None:
    """A 5xx or 408 from the first node sends the call to the second."""
    (refusing, live) = nodes(2)
    edge = start_edge(nodes=uris([refusing, live]), defines=FAST)
    refuser = MediaNode(refusing[0], refusing[1], script=NodeScript(answer=status))
    async with refuser:
        node = start_node(tmp_path, live[1], host=live[0])
        caller = start_caller(edge, tmp_path)
        assert await asyncio.to_thread(caller.wait) == 0, caller.text() + edge.log()
    assert len(refuser.invites) == 1
    assert await asyncio.to_thread(node.wait, 10) == 0
    assert len(node.received("INVITE")) == 1
    assert f"failed with {status}" in edge.log()
    _, metrics = edge.http_get("/metrics")
    assert f'kamailio_edge_failover_total{{status="{status}"}} 1' in metrics


def test_hung_node_is_cancelled_after_the_timer_and_call_moves_on(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """A node stuck at 100 Trying is CANCELled after the answer timer; the next one answers."""
    (hung, live) = nodes(2)
    edge = start_edge(nodes=uris([hung, live]), defines=FAST)
    hanger = start_node(tmp_path, hung[1], host=hung[0], scenario="uas_hang")
    node = start_node(tmp_path, live[1], host=live[0])
    caller = start_caller(edge, tmp_path)
    assert caller.wait() == 0, caller.text() + edge.log()
    assert hanger.wait(10) == 0, hanger.text()
    assert len(hanger.received("CANCEL")) == 1
    assert len(node.received("INVITE")) == 1


def test_callers_cancel_reaches_the_trying_node(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """RingCX giving up during setup: its CANCEL reaches the node, whose 487 reaches RingCX."""
    (trying,) = nodes(1)
    edge = start_edge(nodes=uris([trying]), defines={"MEDIA_ANSWER_TIMEOUT": "10000"})
    node = start_node(tmp_path, trying[1], host=trying[0], scenario="uas_hang")
    caller = start_caller(edge, tmp_path, scenario="uac_cancel")
    assert caller.wait() == 0, caller.text() + edge.log()
    assert node.wait(10) == 0, node.text()
    assert len(node.received("CANCEL")) == 1
    assert caller.received("SIP/2.0 487")


async def test_every_node_failing_gives_the_caller_an_error(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """With every node refusing, RingCX gets the failure instead of a hang."""
    (refusing,) = nodes(1)
    edge = start_edge(nodes=uris([refusing]), defines=FAST)
    async with MediaNode(refusing[0], refusing[1], script=NodeScript(answer=503)):
        caller = start_caller(edge, tmp_path, timeout=10)
        assert await asyncio.to_thread(caller.wait) != 0
    assert caller.received("SIP/2.0 503 No Media Node Available")


def test_dead_node_is_skipped_until_it_answers_probes(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """OPTIONS probing marks a silent node inactive and brings it back once it answers."""
    (late,) = nodes(1)
    edge = start_edge(nodes=uris([late]), defines={**FAST, "DS_PING_INTERVAL": "1"})
    uri = uris([late])[0]
    wait_for_flags(edge, uri, "IP")
    start_node(tmp_path, late[1], host=late[0])  # answers OPTIONS with -aa
    wait_for_flags(edge, uri, "AP")


def test_drained_node_gets_no_calls_until_enabled(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """dispatcher.set_state over JSON-RPC takes a node out of rotation (drain) and puts it back."""
    (first, second) = nodes(2)
    edge = start_edge(nodes=uris([first, second]), defines=FAST)
    first_uri = uris([first])[0]
    edge.rpc("dispatcher.set_state", "d", 1, first_uri)
    assert edge.node_flags()[first_uri].startswith("D")
    node = start_node(tmp_path, second[1], host=second[0])
    caller = start_caller(edge, tmp_path)
    assert caller.wait() == 0, caller.text() + edge.log()
    assert len(node.received("INVITE")) == 1

    edge.rpc("dispatcher.set_state", "a", 1, first_uri)
    back = start_node(tmp_path, first[1], host=first[0])
    caller = start_caller(edge, tmp_path, name="caller-after-drain")
    assert caller.wait() == 0, caller.text() + edge.log()
    assert len(back.received("INVITE")) == 1
