"""Placing a call through the live edge and reading what the controller made of it."""

from __future__ import annotations

from collections.abc import Callable

from ivagate.calls.records import CallRecord
from ivagate.controller import Controller
from ivagate_kit import CallReport, run_call
from ivagate_kit.transport import TransportName
from support import polling
from support.edge import Edge, emulator_plan

__all__ = ["call", "record_of", "until"]

WITHIN = 20.0  # seconds; generous, the machine is shared


async def until(predicate: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    """Return once ``predicate()`` holds; fail saying ``what`` did not happen."""
    await polling.until(predicate, what, within)


async def call(edge: Edge, transport: TransportName = "udp", **plan: object) -> CallReport:
    """One emulated RingCX call through ``edge`` (CallPlan fields as keywords)."""
    return await run_call(emulator_plan(edge, transport, timeout=WITHIN, **plan))


async def record_of(controller: Controller, report: CallReport) -> CallRecord:
    """The controller's record of the emulator's call (same SIP Call-ID), once it ended."""
    await until(lambda: controller.calls.get(report.call_id) is not None, "the controller took it")
    session = controller.calls.get(report.call_id)
    assert session is not None
    if not await session.wait_ended(WITHIN):
        raise AssertionError(
            f"the controller's call {report.call_id} never ended: {session.record}"
        )
    return session.record
