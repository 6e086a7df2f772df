"""Fixtures for the FreeSWITCH config tree: the assembled tree, and a real FreeSWITCH when given."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from fs_tree import SITE_ENV, Assembly, assemble


@pytest.fixture
def tree() -> Callable[..., Assembly]:
    """Assemble the tree with SITE_ENV plus overrides (a value of None removes a variable)."""

    def build(env: Mapping[str, str | None] | None = None) -> Assembly:
        merged: dict[str, str | None] = {**SITE_ENV, **(env or {})}
        return assemble({k: v for k, v in merged.items() if v is not None})

    return build
