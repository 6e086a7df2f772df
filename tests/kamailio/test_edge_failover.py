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


async def test_last_node_shedding_load_passes_its_503_to_the_caller(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """The only node refusing with 503 (shedding load): RingCX gets the node's 503, not
    "No Media Node Available", and the node stays in rotation."""
    (refusing,) = nodes(1)
    edge = start_edge(nodes=uris([refusing]), defines={**FAST, "DS_STRIKES": "1"})
    async with MediaNode(refusing[0], refusing[1], script=NodeScript(answer=503)):
        for attempt in range(2):
            caller = start_caller(edge, tmp_path, timeout=10, name=f"caller{attempt}")
            assert await asyncio.to_thread(caller.wait) != 0
            assert caller.received("SIP/2.0 503 Service Unavailable"), edge.log()
            assert not caller.received("SIP/2.0 503 No Media Node Available")
    assert edge.node_flags()[uris([refusing])[0]].startswith("A")  # active


def test_every_node_silent_gives_the_caller_no_media_node(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """With every node silent, RingCX gets 503 No Media Node Available instead of a hang."""
    (silent,) = nodes(1)
    edge = start_edge(nodes=uris([silent]), defines=FAST)
    caller = start_caller(edge, tmp_path, timeout=10)
    assert caller.wait() != 0
    assert caller.received("SIP/2.0 503 No Media Node Available")


async def test_slow_node_stays_in_rotation(start_edge: Callable[..., Edge], tmp_path: Path) -> None:
    """A node answering late (100 Trying at once, 200 after the answer timer) is alive: its
    calls fail over, it takes no strike, and the next call once it is fast again is served."""
    (slow,) = nodes(1)
    edge = start_edge(nodes=uris([slow]), defines={**FAST, "DS_STRIKES": "1"})
    async with MediaNode(slow[0], slow[1], script=NodeScript(answer_delay=2.5)) as late:
        for attempt in range(2):
            caller = start_caller(edge, tmp_path, timeout=10, name=f"slow{attempt}")
            assert await asyncio.to_thread(caller.wait) != 0
    assert len(late.invites) == 2
    assert edge.node_flags()[uris([slow])[0]].startswith("A")  # active
    node = start_node(tmp_path, slow[1], host=slow[0])
    caller = start_caller(edge, tmp_path, name="served")
    assert await asyncio.to_thread(caller.wait) == 0, caller.text() + edge.log()
    assert await asyncio.to_thread(node.wait, 10) == 0


def test_last_silent_node_is_left_to_the_probes(
    start_edge: Callable[..., Edge], tmp_path: Path
) -> None:
    """The only node in rotation, silent on a call, is not struck out by it (one slow moment
    must not become an outage); probing decides whether it is dead."""
    (silent,) = nodes(1)
    edge = start_edge(nodes=uris([silent]), defines={**FAST, "DS_STRIKES": "1"})
    caller = start_caller(edge, tmp_path, timeout=10)
    assert caller.wait() != 0
    assert "the last one in rotation, kept" in edge.log()
    assert edge.node_flags()[uris([silent])[0]].startswith("A")  # active


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


def probes(node: MediaNode) -> set[str]:
    """The OPTIONS probes a node received (each once, whatever its retransmissions)."""
    return {r.call_id for r in node.requests if r.method == "OPTIONS"}


async def test_node_answering_probes_late_stays_in_rotation(
    start_edge: Callable[..., Edge],
) -> None:
    """A node under load answers every OPTIONS probe after MEDIA_REPLY_TIMEOUT (1 s here)
    but before the next probe: it answers, so it is alive and stays in rotation (a dead one
    still leaves: test_dead_node_is_skipped_until_it_answers_probes)."""
    (late,) = nodes(1)
    strikes = 2
    defines = {**FAST, "DS_PING_INTERVAL": "2", "DS_STRIKES": str(strikes)}
    edge = start_edge(nodes=uris([late]), defines=defines)
    async with MediaNode(late[0], late[1], script=NodeScript(options_delay=1.5)) as node:
        # the probes before the last have had their late answers
        await node.wait_until(lambda: len(probes(node)) > strikes, within=20)
        assert edge.node_flags()[uris([late])[0]].startswith("A")  # active


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
