"""Whole calls, RingCX emulator -> real edge -> real FreeSWITCH -> controller -> test bot.

The controller behaviours tests/control checks against the ESL double, once more against the
real thing: each test asserts on the wire (the emulator's report) and in state (the
controller's CallRecord).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from live_calls import call

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit.transport import TransportName
from support import bots
from support.controller import record_of
from support.edge import Edge
from support.polling import until

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_full_call_with_updates_and_final(
    edge: Edge, start_controller: StartController, transport: TransportName
) -> None:
    """Two updates and the final intent reach the caller as JSON INFOs, in order; the caller
    hangs up after the final intent: Success. Over TLS the answer is SRTP."""
    controller = await start_controller()
    report = await call(edge, transport, headers={"X-Bot-Id": "TwoUpdates"})
    assert report.ok, report.render()
    record = await record_of(controller, report)
    assert [(i.content_type, i.json) for i in report.infos] == [
        ("application/json", {"n": 1}),
        ("application/json", {"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'}),
        ("application/json", {"intent": "Sales", "final": True}),
    ]
    assert report.bye_status == 200 and not report.bye_from_remote
    assert record.outcome is Outcome.SUCCESS, record
    assert record.bot == "TwoUpdates"
    assert record.transport == transport
    assert record.srtp is (transport == "tls")
    assert [(i.final, i.reply) for i in record.infos] == [
        (False, "+OK Success"),
        (False, "+OK Success"),
        (True, "+OK Success"),
    ]
    assert record.hangup_cause == "NORMAL_CLEARING"


async def test_concurrent_calls_each_get_their_own_infos(
    edge: Edge, start_controller: StartController
) -> None:
    """Nine calls at once, three per transport: each caller gets its own three INFOs, each
    call is a Success. (This load is where the emulator, sharing the busy loop, answered
    INFOs sent before its ACK with 481: support.bots.Recording waits for the ACK.)"""
    controller = await start_controller()
    transports: list[TransportName] = ["udp", "tcp", "tls"] * 3
    reports = await asyncio.gather(
        *(call(edge, t, headers={"X-Bot-Id": "TwoUpdates"}) for t in transports)
    )
    for report in reports:
        assert report.ok, report.render()
        assert len(report.infos) == 3 and report.infos[-1].json == {
            "intent": "Sales",
            "final": True,
        }
    records = [await record_of(controller, report) for report in reports]
    assert [r.outcome for r in records] == [Outcome.SUCCESS] * len(transports)
    assert [r.transport for r in records] == transports


async def test_caller_hangs_up_mid_bot(edge: Edge, start_controller: StartController) -> None:
    """The caller's BYE during a playback: the bot's play() raises CallEnded, Disconnected."""
    controller = await start_controller()
    report = await call(edge, headers={"X-Bot-Id": "LongPlay"}, bye=1.0)
    assert report.ok, report.render()
    record = await record_of(controller, report)
    assert report.infos == [] and report.bye_status == 200
    assert record.outcome is Outcome.DISCONNECTED, record
    await until(lambda: ("hangup", Outcome.DISCONNECTED) in bots.LongPlay.seen, "on_hangup")
    assert "CallEnded" in bots.LongPlay.seen


async def test_update_after_hangup_sends_no_info(
    edge: Edge, start_controller: StartController
) -> None:
    """send_update() after the caller hung up raises CallEnded; no INFO is handed over."""
    bots.UpdateAfterHangup.hung_up = asyncio.Event()
    controller = await start_controller()
    report = await call(edge, headers={"X-Bot-Id": "UpdateAfterHangup"}, bye=0.5)
    assert report.ok, report.render()
    assert report.infos == [] and report.bye_status == 200
    record = await record_of(controller, report)
    bots.UpdateAfterHangup.hung_up.set()
    await until(
        lambda: any(seen[0] == "CallEnded" for seen in bots.UpdateAfterHangup.seen),
        "the bot's late update raised CallEnded",
    )
    assert record.outcome is Outcome.DISCONNECTED, record
    assert record.infos == []


async def test_unknown_did_is_refused_404_unanswered(
    edge: Edge, start_controller: StartController
) -> None:
    """No route for the DID and no default bot: the caller gets 404, nothing was answered."""
    controller = await start_controller(
        routing={"default_bot": None, "dids": {"15550009999": "TwoUpdates"}}
    )
    report = await call(edge, did="15550001000", expect=404)
    assert report.ok, report.render()
    record = await record_of(controller, report)
    assert report.invite_status == 404
    assert record.outcome is Outcome.FAILED, record
    assert record.bot is None and "404" in (record.error or "")
    assert record.answered_at is None


async def test_bot_header_wins_over_the_did(edge: Edge, start_controller: StartController) -> None:
    """Same DID, routed to Silent: with X-Bot-Id the header's bot takes the call instead."""
    did = "15550002000"
    controller = await start_controller(routing={"default_bot": None, "dids": {did: "Silent"}})
    by_header = await call(edge, did=did, headers={"X-Bot-Id": "FinishOnly"})
    by_did = await call(edge, did=did, bye="never")
    assert by_header.ok, by_header.render()
    assert by_did.ok, by_did.render()
    header_record = await record_of(controller, by_header)
    did_record = await record_of(controller, by_did)

    assert [i.json for i in by_header.infos] == [{"intent": "Sales", "final": True}]
    assert header_record.bot == "FinishOnly" and header_record.outcome is Outcome.SUCCESS
    # Silent answers and returns without a final intent: we hang up, Failed
    assert by_did.infos == [] and by_did.bye_from_remote
    assert did_record.bot == "Silent" and did_record.outcome is Outcome.FAILED
    assert did_record.error == "bot returned without a final intent"


@pytest.mark.parametrize("transport", ["udp", "tls"])
async def test_final_without_bye_we_hang_up(
    edge: Edge, start_controller: StartController, transport: TransportName
) -> None:
    """The caller never hangs up after the final intent: after call.final_bye_timeout our
    BYE reaches it (over its own connection on TLS); the call is still a Success."""
    controller = await start_controller(call={"final_bye_timeout": 0.5})
    report = await call(edge, transport, headers={"X-Bot-Id": "FinishOnly"}, bye="never")
    assert report.ok, report.render()
    record = await record_of(controller, report)
    assert [i.json for i in report.infos] == [{"intent": "Sales", "final": True}]
    assert report.bye_from_remote and report.bye_status is None
    assert record.outcome is Outcome.SUCCESS, record
    assert record.final_at is not None
