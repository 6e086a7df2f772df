"""The whole stack: emulator -> edge -> FreeSWITCH with its controller and the demo bot.

It runs whenever a real FreeSWITCH is found (``support.freeswitch``: an image, or a binary
packaged into one), with the repository's freeswitch/ tree mounted in it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from testcontainers.core.network import Network
from tests.support.freeswitch import SKIP_REASON, find_image
from tests.support.stack import (
    ControllerContainer,
    EdgeContainer,
    EmulatorContainer,
    FreeSwitchContainer,
    StackImages,
    network_subnet,
)

pytestmark = [pytest.mark.docker, pytest.mark.freeswitch]


@pytest.fixture(scope="module")
def freeswitch_image() -> str:
    image = find_image()
    if image is None:
        pytest.skip(SKIP_REASON)
    return image


@pytest.fixture(scope="module")
def full_edge(
    stack_images: StackImages, network: Network, caller: EmulatorContainer, freeswitch_image: str
) -> Iterator[EdgeContainer]:
    """FreeSWITCH on the repository's tree, its controller beside it, and an edge in front."""
    password = secrets.token_hex(16)
    # The edge's address is not known before the node starts: trust the suite's own network.
    with (
        FreeSwitchContainer(
            freeswitch_image, network, edge_cidr=network_subnet(network), esl_password=password
        ) as node,
        ControllerContainer(stack_images.control, node, password),
        EdgeContainer(
            stack_images.kamailio,
            network,
            allow=[caller.ip],
            media_nodes=[node.uri],
            role="edge-full",
        ) as edge,
    ):
        yield edge


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_demo_bot_call_through_whole_stack(
    full_edge: EdgeContainer, caller: EmulatorContainer, transport: str
) -> None:
    """The demo bot's update and final intent reach the caller, and every check passes."""
    run = caller.call(
        full_edge.target(transport), transport, "--header", "X-Bot-Id: demo", "--timeout", "30"
    )

    assert run.exit_code == 0, run.explain()
    bodies = [info["json"] for info in run.report["infos"]]
    assert bodies[0] == {"event": "digit", "digit": None}
    assert bodies[-1]["final"] is True
    assert bodies[-1]["intent"] == "NoInput"
    assert run.report["bye_from_remote"] is False, "the caller ends the call after the final intent"
