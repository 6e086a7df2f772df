"""The node's life under the controller: drain, and FreeSWITCH restarted beneath it.

Calls go RingCX emulator -> real edge -> real FreeSWITCH -> controller, as in test_live_calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from live_calls import call

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from support import bots
from support.controller import record_of
from support.edge import Edge
from support.fs_node import LiveNode
from support.polling import until

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]


async def test_drain_refuses_new_calls_and_lets_active_ones_finish(
    edge: Edge, start_controller: StartController
) -> None:
    """Draining: FreeSWITCH's gate closes, so a new call gets 503 (the edge has no other
    node to try) and never reaches the controller; the call already up finishes: Success."""
    bots.Gated.go = asyncio.Event()
    controller = await start_controller()
    active = asyncio.create_task(call(edge, "tcp", headers={"X-Bot-Id": "Gated"}))
    await until(lambda: bool(bots.Gated.seen), "the first call answered")

    await controller.drain()
    assert (await controller.esl.api("global_getvar ivagate_ready")).strip() == "false"
    refused = await call(edge, headers={"X-Bot-Id": "Gated"}, expect=503)
    bots.Gated.go.set()
    finished = await active

    assert refused.ok, refused.render()
    assert refused.invite_status == 503
    assert controller.calls.get(refused.call_id) is None
    assert finished.ok, finished.render()
    record = await record_of(controller, finished)
    await asyncio.wait_for(controller.wait_idle(), 10)
    assert [i.json for i in finished.infos] == [{"intent": "Sales", "final": True}]
    assert record.outcome is Outcome.SUCCESS, record
    assert controller.draining and not controller.ready


async def test_freeswitch_restarted_under_the_controller(
    edge: Edge, freeswitch: LiveNode, start_controller: StartController
) -> None:
    """FreeSWITCH stops and starts again on the same ports: the controller reconnects, opens
    the new process's ready gate (which starts closed) and takes the next call."""
    controller = await start_controller()
    dropped = asyncio.create_task(until(lambda: not controller.connected, "connection lost"))
    await asyncio.to_thread(freeswitch.restart)  # the controller's loop runs meanwhile
    await dropped
    await until(lambda: controller.ready, "the controller reconnected and opened the gate")

    assert (await controller.esl.api("global_getvar ivagate_ready")).strip() == "true"
    report = await call(edge, headers={"X-Bot-Id": "TwoUpdates"})
    assert report.ok, report.render()
    record = await record_of(controller, report)
    assert [i.json for i in report.infos][-1] == {"intent": "Sales", "final": True}
    assert record.outcome is Outcome.SUCCESS, record
