"""Pinning benchmark processes to cores, so a figure is one process's own core and the
processes under test do not trade caches and time slices with the driver."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil

__all__ = ["pinning", "started_on"]


@contextlib.contextmanager
def started_on(core: int) -> Iterator[None]:
    """Processes started inside inherit ``core`` as their only CPU (a fork copies the
    calling thread's affinity), so no helper needs a pinning option."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pinning() -> str:
    """Which cores this process's SIPp and Kamailio children may run on, as seen by the OS."""
    cores: dict[str, set[int]] = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            cores.setdefault(child.name(), set()).update(child.cpu_affinity())
    return ", ".join(f"{name} on core {sorted(ids)}" for name, ids in sorted(cores.items()))
