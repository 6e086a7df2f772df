"""Placing a call through the live edge, measuring what a caller heard."""

from __future__ import annotations

from collections.abc import Sequence

from ivagate_kit import CallReport, run_call
from ivagate_kit.audio import HEARD_DBFS, rms_dbfs
from ivagate_kit.transport import TransportName
from support.edge import Edge, emulator_plan
from support.polling import WITHIN

__all__ = ["call", "voiced_seconds"]


async def call(edge: Edge, transport: TransportName = "udp", **plan: object) -> CallReport:
    """One emulated RingCX call through ``edge`` (CallPlan fields as keywords)."""
    return await run_call(emulator_plan(edge, transport, timeout=WITHIN, **plan))


def voiced_seconds(samples: Sequence[int], rate: int) -> float:
    """Seconds of 20 ms frames above the kit's 'heard' level."""
    step = rate // 50
    frames = [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]
    return sum(rms_dbfs(f) > HEARD_DBFS for f in frames) * 0.02
