"""The edge image alone, in front of stand-in media nodes, called by the RingCX emulator.

Every call goes container to container on the suite's private network: emulator -> edge
(Kamailio, the repository's kamailio/ tree) -> stand-in media node (``ivagate-kit stand-in``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from testcontainers.core.network import Network
from tests.support.stack import (
    EdgeContainer,
    EmulatorContainer,
    StackImages,
    StandInContainer,
    stand_in_pair,
)

pytestmark = pytest.mark.docker

TRANSPORTS = ["udp", "tcp", "tls"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_emulator_checks_pass_through_edge(
    edge: EdgeContainer, caller: EmulatorContainer, transport: str
) -> None:
    """Every emulator check passes over the edge, with keep-alive pings on TCP and TLS."""
    run = caller.call(edge.target(transport), transport, "--ping-interval", "0.1")

    assert run.exit_code == 0, run.explain()
    assert [c["name"] for c in run.report["checks"] if not c["passed"]] == []
    assert run.report["invite_status"] == 200
    assert run.node() in {"media1", "media2"}
    assert run.report["infos"][-1]["json"] == {"intent": "done", "final": True}
    if transport != "udp":
        assert run.report["pings_sent"] > 0
        assert run.report["pongs_received"] > 0, "the edge answers RFC 5626 CRLF pings"
        assert run.report["contact_attempts"] == 0


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_source_outside_allowlist_is_refused(
    edge: EdgeContainer,
    outsider: EmulatorContainer,
    media_nodes: tuple[StandInContainer, ...],
    transport: str,
) -> None:
    """A caller whose address is not allowlisted gets no answer and reaches no media node."""
    run = outsider.call(edge.target(transport), transport, "--timeout", "3")

    assert run.exit_code == 1, run.explain()
    assert run.report["invite_status"] is None, "dropped silently, not rejected"
    call_id = run.report["call_id"]
    assert all(call_id not in node.logs() for node in media_nodes)


@pytest.fixture
def failover_nodes(
    stack_images: StackImages, network: Network
) -> Iterator[tuple[StandInContainer, StandInContainer]]:
    """Two media nodes of the test's own: the test stops one."""
    with stand_in_pair(stack_images.kit, network, ("media3", "media4")) as nodes:
        yield nodes


def test_media_node_stopped_mid_run(
    stack_images: StackImages,
    network: Network,
    caller: EmulatorContainer,
    failover_nodes: tuple[StandInContainer, StandInContainer],
) -> None:
    """After one media node stops, new calls go to the other one and none fails."""
    stopped, survivor = failover_nodes
    stopped_uri, survivor_uri = stopped.uri, survivor.uri  # a stopped container has no address
    with EdgeContainer(
        stack_images.kamailio,
        network,
        allow=[caller.ip],
        media_nodes=[node.uri for node in failover_nodes],
        role="edge-failover",
    ) as edge:
        target = edge.target("tls")
        before = [caller.call(target, "tls") for _ in range(4)]
        stopped.halt()
        after = [caller.call(target, "tls") for _ in range(6)]
        flags = edge.media_node_flags()

    assert [run.exit_code for run in before + after] == [0] * 10, [r.explain() for r in after]
    assert {run.node() for run in before} == {"media3", "media4"}, "round robin used both"
    assert [run.node() for run in after] == ["media4"] * 6
    assert flags[stopped_uri].startswith("I"), "the edge took the stopped node out of rotation"
    assert flags[survivor_uri].startswith("A")
