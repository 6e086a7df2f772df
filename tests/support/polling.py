"""Waiting in a test for something observable to happen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["WITHIN", "until"]

WITHIN = 20.0  # seconds; generous, the machine is shared


async def until(predicate: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    """Return once ``predicate()`` holds; fail saying ``what`` did not happen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        await asyncio.sleep(0.02)
