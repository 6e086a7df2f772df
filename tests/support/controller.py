"""A controller in a test: its settings (fast timers, the test bots of ``support.bots``
registered), starting it until it is ready, and its record of a call once the call ended."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from ivagate.calls.records import CallRecord
from ivagate.calls.session import CallSession
from ivagate.controller import Controller
from ivagate.settings import Settings
from ivagate_kit import CallReport

from . import bots
from .polling import WITHIN, until

__all__ = [
    "TEST_BOTS",
    "controller_settings",
    "ended_record",
    "record_of",
    "running_controllers",
]

# the controller loads them by "module:Class", as a site's own bots; tests read support.bots
TEST_BOTS = {name: f"support.bots:{name}" for name in bots.__all__}


def controller_settings(port: int, password: str, **sections: Any) -> Settings:
    """Settings for a controller on the event socket at 127.0.0.1:``port`` (overrides as
    keyword sections, merged into the test defaults)."""
    esl = {"host": "127.0.0.1", "port": port, "password": password}
    esl.update(reply_timeout=2.0, reconnect_min=0.05, reconnect_max=0.2)
    esl.update(sections.pop("esl", {}))
    call = {"bots": TEST_BOTS, "final_bye_timeout": 2.0, "drain_timeout": 2.0}
    call.update(sections.pop("call", {}))
    routing = {"bot_header": "X-Bot-Id", "default_bot": "TwoUpdates"}
    routing.update(sections.pop("routing", {}))
    return Settings(esl=esl, call=call, routing=routing, **sections)


@asynccontextmanager
async def running_controllers(
    port: int, password: str, **defaults: dict[str, Any]
) -> AsyncIterator[Callable[..., Awaitable[Controller]]]:
    """``await start(**sections)``: a controller on the event socket at 127.0.0.1:``port``
    (``controller_settings``, each of ``sections`` merged over the same one of ``defaults``),
    returned once it has opened the node's ready gate. All are stopped (drained, calls
    ended) on leaving."""
    started: list[Controller] = []

    async def start(**sections: dict[str, Any]) -> Controller:
        for name, section in defaults.items():
            sections[name] = {**section, **sections.get(name, {})}
        controller = Controller(controller_settings(port, password, **sections))
        started.append(controller)  # stopped even if it never gets ready
        await controller.start()
        await until(lambda: controller.ready, "the controller opened the ready gate")
        return controller

    try:
        yield start
    finally:
        for controller in started:
            await controller.stop()


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
