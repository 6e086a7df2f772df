"""Fixtures of the testcontainers suite: the stack's images, a private network, its containers.

Images and containers are session-scoped (building and starting them is the cost); tests that
change what they are given (stopping a media node) start their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from docker.errors import DockerException
from testcontainers.core.network import Network
from tests.support.stack import (
    EdgeContainer,
    EmulatorContainer,
    StackImages,
    StandInContainer,
    build_images,
    private_network,
    stand_in_pair,
)


@pytest.fixture(scope="session")
def stack_images() -> StackImages:
    """The edge, control and kit images, built from this repository (cached layers after the
    first)."""
    try:
        docker.from_env().ping()
    except DockerException as exc:
        pytest.skip(
            f"needs a running Docker Engine reachable through DOCKER_HOST or its socket: {exc}"
        )
    return build_images()


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    with private_network() as net:
        yield net


@pytest.fixture(scope="session")
def caller(stack_images: StackImages, network: Network) -> Iterator[EmulatorContainer]:
    """The emulated RingCX: its address is on the edge's allowlist."""
    with EmulatorContainer(stack_images.kit, network, "caller") as container:
        yield container


@pytest.fixture(scope="session")
def outsider(stack_images: StackImages, network: Network) -> Iterator[EmulatorContainer]:
    """A second caller whose address is on no allowlist."""
    with EmulatorContainer(stack_images.kit, network, "outsider") as container:
        yield container


@pytest.fixture(scope="session")
def media_nodes(
    stack_images: StackImages, network: Network
) -> Iterator[tuple[StandInContainer, StandInContainer]]:
    with stand_in_pair(stack_images.kit, network, ("media1", "media2")) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def edge(
    stack_images: StackImages,
    network: Network,
    caller: EmulatorContainer,
    outsider: EmulatorContainer,  # started first, so it is a live address the edge must refuse
    media_nodes: tuple[StandInContainer, StandInContainer],
) -> Iterator[EdgeContainer]:
    """The edge alone in front of two stand-in media nodes, allowing only ``caller``."""
    with EdgeContainer(
        stack_images.kamailio,
        network,
        allow=[caller.ip],
        media_nodes=[node.uri for node in media_nodes],
    ) as container:
        yield container
