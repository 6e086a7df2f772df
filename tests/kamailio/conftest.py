"""Fixtures for the edge tests: certificates, a started edge, a spy on the caller's Contact.

Addresses are in tests/support/edge.py (RingCX and media nodes must differ by IP).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.edge import (
    CALLER,
    ConnectionSpy,
    Edge,
    EdgeSetup,
    stop_all_sipp,
    write_certificates,
)


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edge's certificate directory (see ``write_certificates``)."""
    return write_certificates(tmp_path_factory.mktemp("edge-tls"))


@pytest.fixture
def start_edge(tmp_path: Path, tls_dir: Path) -> Iterator[Callable[..., Edge]]:
    """``start_edge(nodes=[...], **EdgeSetup fields)`` runs the shipped config; stops it after."""
    edges: list[Edge] = []

    def start(**fields: object) -> Edge:
        fields.setdefault("tls_dir", tls_dir)
        workdir = tmp_path / f"edge{len(edges)}"
        workdir.mkdir()
        edge = Edge(workdir, EdgeSetup(**fields))  # type: ignore[arg-type]
        edges.append(edge)
        return edge.start()

    yield start
    for edge in edges:
        edge.stop()


@pytest.fixture
def contact_spy() -> Iterator[ConnectionSpy]:
    spy = ConnectionSpy(CALLER)
    yield spy
    spy.close()


@pytest.fixture(autouse=True)
def no_sipp_left() -> Iterator[None]:
    """SIPp nodes that never got their call are stopped with the test."""
    yield
    stop_all_sipp()
