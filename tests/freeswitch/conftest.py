"""Fixtures for the FreeSWITCH config tree: the assembled tree, and a real FreeSWITCH when given."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from fs_tree import Assembly, assemble

# A site as an operator would configure it (documentation addresses, RFC 5737).
SITE_ENV = {
    "IVAGATE_FS_SIP_IP": "192.0.2.10",
    "IVAGATE_FS_EDGE_CIDRS": "198.51.100.0/24,203.0.113.7/32",
    "IVAGATE_FS_ESL_PASSWORD": "s3cret-for-tests",
}


@pytest.fixture
def tree() -> Callable[..., Assembly]:
    """Assemble the tree with SITE_ENV plus overrides (a value of None removes a variable)."""

    def build(env: Mapping[str, str | None] | None = None) -> Assembly:
        merged: dict[str, str | None] = {**SITE_ENV, **(env or {})}
        return assemble({k: v for k, v in merged.items() if v is not None})

    return build
