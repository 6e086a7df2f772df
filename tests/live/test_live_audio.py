"""Live call audio (issue 13), RingCX emulator -> real edge -> real FreeSWITCH -> controller
-> a bot's audio stream, and back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from live_calls import call, record_of

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from support import bots
from support.edge import Edge

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_stream_opens_carries_frames_and_closes(
    edge: Edge, start_controller: StartController, rate: int
) -> None:
    controller = await start_controller(
        call={"bot_options": {"AudioSmoke": {"wait_for_ack": True, "rate": rate}}}
    )
    bots.AudioSmoke.seen.clear()
    report = await call(edge, "tls", headers={"X-Bot-Id": "AudioSmoke"})
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, bots.AudioSmoke.seen, report.render())
    print(bots.AudioSmoke.seen)
    assert bots.AudioSmoke.seen[:3] == [
        ("mark", True),
        ("frames", 50, {rate // 50 * 2}),
        ("closed", True),
    ]
