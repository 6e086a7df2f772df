"""Placing a call through the live edge, reading what the controller made of it, measuring
what a caller heard."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ivagate.calls.records import CallRecord
from ivagate.calls.session import CallSession
from ivagate.controller import Controller
from ivagate_kit import CallReport, run_call
from ivagate_kit.audio import HEARD_DBFS, rms_dbfs
from ivagate_kit.transport import TransportName
from support import polling
from support.edge import Edge, emulator_plan

__all__ = ["call", "ended_record", "record_of", "until", "voiced_seconds"]

WITHIN = 20.0  # seconds; generous, the machine is shared


async def until(predicate: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    """Return once ``predicate()`` holds; fail saying ``what`` did not happen."""
    await polling.until(predicate, what, within)


async def call(edge: Edge, transport: TransportName = "udp", **plan: object) -> CallReport:
    """One emulated RingCX call through ``edge`` (CallPlan fields as keywords)."""
    return await run_call(emulator_plan(edge, transport, timeout=WITHIN, **plan))


async def record_of(controller: Controller, report: CallReport) -> CallRecord:
    """The controller's record of the emulator's call (same SIP Call-ID), once it ended."""
    return await ended_record(controller, report.call_id)


async def ended_record(controller: Controller, call_id: str | None = None) -> CallRecord:
    """The controller's record of the call with SIP Call-ID ``call_id`` (None: its first
    call, for a caller whose Call-ID the test does not know), once it ended."""

    def session() -> CallSession | None:
        if call_id is None:
            return next(iter(controller.calls), None)
        return controller.calls.get(call_id)

    await until(lambda: session() is not None, "the controller took it")
    taken = session()
    assert taken is not None
    if not await taken.wait_ended(WITHIN):
        raise AssertionError(f"the controller's call {call_id} never ended: {taken.record}")
    return taken.record


def voiced_seconds(samples: Sequence[int], rate: int) -> float:
    """Seconds of 20 ms frames above the kit's 'heard' level."""
    step = rate // 50
    frames = [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]
    return sum(rms_dbfs(f) > HEARD_DBFS for f in frames) * 0.02
