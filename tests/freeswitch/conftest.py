"""Fixtures for the FreeSWITCH config tree: the assembled tree, and a real FreeSWITCH when given."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest
from fs_tree import SITE_ENV, Assembly, assemble

from support.fs_node import LiveNode, found_freeswitch


@pytest.fixture
def tree() -> Callable[..., Assembly]:
    """Assemble the tree with SITE_ENV plus overrides (a value of None removes a variable)."""

    def build(env: Mapping[str, str | None] | None = None) -> Assembly:
        merged: dict[str, str | None] = {**SITE_ENV, **(env or {})}
        return assemble({k: v for k, v in merged.items() if v is not None})

    return build


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A real FreeSWITCH for the module's tests, or a skip saying how to provide one."""
    with found_freeswitch(tmp_path_factory.mktemp("freeswitch")) as node:
        yield node
