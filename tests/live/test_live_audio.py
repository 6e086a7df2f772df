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


@pytest.mark.parametrize(("rate", "encoding"), [(8000, "l16"), (16000, "l16"), (8000, "pcmu")])
async def test_stream_opens_carries_frames_and_closes(
    edge: Edge, start_controller: StartController, rate: int, encoding: str
) -> None:
    options = {"wait_for_ack": True, "rate": rate, "encoding": encoding}
    controller = await start_controller(call={"bot_options": {"AudioSmoke": options}})
    bots.AudioSmoke.seen.clear()
    report = await call(edge, "tls", headers={"X-Bot-Id": "AudioSmoke"})
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, bots.AudioSmoke.seen, report.render())
    print(bots.AudioSmoke.seen)
    assert bots.AudioSmoke.seen[:3] == [
        ("mark", True),
        ("frames", 50, {rate // 50 * (2 if encoding == "l16" else 1)}),
        ("closed", True),
    ]


@pytest.mark.parametrize("mode", ["rfc2833", "info"])
async def test_dtmf_reaches_the_bot_while_its_stream_is_open_and_hangup_ends_the_stream(
    edge: Edge, start_controller: StartController, mode: str
) -> None:
    """The caller presses keys (RTP events or SIP INFO) during the stream, then hangs up:
    the bot's on_dtmf gets them, its frame loop ends, and the next action says the call
    is over."""
    controller = await start_controller()
    bots.StreamUntilHangup.seen.clear()
    report = await call(
        edge, "udp", headers={"X-Bot-Id": "StreamUntilHangup"}, dtmf="12", dtmf_mode=mode, bye=3.0
    )
    record = await record_of(controller, report)
    assert record.outcome is Outcome.DISCONNECTED, record
    assert bots.StreamUntilHangup.seen == [
        ("dtmf", "1"),
        ("dtmf", "2"),
        ("stream ended", True),
        ("play", "CallEnded"),
        ("hangup", Outcome.DISCONNECTED),
    ]
