"""Whole calls through the controller against the recorded-bytes ESL double."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from ivagate.bots.base import Outcome
from ivagate.calls.records import CallRecord
from ivagate.controller import Controller
from ivagate.log import JsonFormatter, TextFormatter
from ivagate_kit.esl_double import EslDouble
from support import bots


async def ended(controller: Controller, uuid: str) -> CallRecord:
    """The call's record once it has ended."""
    for _ in range(500):
        call = controller.calls.get(uuid)
        if call is not None:
            await asyncio.wait_for(call.wait_ended(), 5)
            return call.record
        await asyncio.sleep(0.01)
    raise AssertionError(f"the controller never took {uuid}")


async def test_full_call_two_updates_and_final(double: EslDouble, controller_on) -> None:
    """Two updates then the final intent reach FreeSWITCH in order; RingCX's BYE -> Success."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 3)
    await double.caller_hangup(uuid)  # RingCX hangs up after the final intent
    record = await ended(controller, uuid)
    await double.wait_for(lambda: all(info.reply for info in record.infos))  # replies race the BYE
    assert double.channels[uuid].infos == [
        {"n": 1},
        {"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'},
        {"intent": "Sales", "final": True},
    ]
    assert record.outcome is Outcome.SUCCESS
    assert record.answered_at is not None  # uuid_answer's reply was +OK
    assert record.srtp is True  # the double answers as recorded: RTP/SAVP
    assert [info.final for info in record.infos] == [False, False, True]
    assert all(info.reply == "+OK Success" and info.sip_status is None for info in record.infos)
    assert record.sip_call_id == double.channels[uuid].call_id
    assert not double.commands("api uuid_kill")  # RingCX hung up, not us
    await double.wait_for(lambda: ("hangup", Outcome.SUCCESS) in bots.TwoUpdates.seen)


async def test_caller_hangs_up_mid_bot(double: EslDouble, controller_on) -> None:
    """The caller's BYE during a playback: the bot gets CallEnded, outcome Disconnected."""
    double.media_seconds = 30
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "LongPlay"})
    await double.wait_for(lambda: bool(double.channels[uuid].pending))
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.DISCONNECTED
    await double.wait_for(lambda: ("hangup", Outcome.DISCONNECTED) in bots.LongPlay.seen)
    assert "CallEnded" in bots.LongPlay.seen


async def test_call_end_stops_an_action_whose_completion_never_comes(
    double: EslDouble, controller_on
) -> None:
    """Should the playback's CHANNEL_EXECUTE_COMPLETE never come (FreeSWITCH sends it when
    the BYE cuts a playback, recorded; here it is lost), the call's end alone stops the
    bot's action with CallEnded: the bot is not left waiting."""
    double.media_seconds = 30
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "LongPlay"})
    await double.wait_for(lambda: bool(double.channels[uuid].pending))
    double.channels[uuid].pending.clear()  # the completion is lost
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.DISCONNECTED
    # at once, not when the bot is stopped for overrunning (call.final_bye_timeout, 2 s)
    await double.wait_for(lambda: "CallEnded" in bots.LongPlay.seen, within=1.0)
    await double.wait_for(lambda: ("hangup", Outcome.DISCONNECTED) in bots.LongPlay.seen)


async def test_a_bot_that_overruns_the_call_is_stopped_after_the_bye_timeout(
    double: EslDouble, controller_on
) -> None:
    """The caller hangs up while the bot waits on something of its own: it gets
    call.final_bye_timeout (2 s here), then is cancelled; the call stays Disconnected and
    the bot's on_hangup still runs."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Daydream"})
    await double.wait_for(lambda: double.channels[uuid].state == "answered")
    started = asyncio.get_running_loop().time()
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    await double.wait_for(lambda: ("hangup", Outcome.DISCONNECTED) in bots.Daydream.seen)
    waited = asyncio.get_running_loop().time() - started
    assert 2.0 <= waited < 3.0
    assert record.outcome is Outcome.DISCONNECTED
    assert record.error == "bot stopped: it did not return after the call ended"
    assert bots.Daydream.seen[0] == "cancelled"


async def test_info_racing_the_bye_gets_recorded_err(double: EslDouble, controller_on) -> None:
    """INFO sent as the caller hangs up: recorded -ERR Operation Failed, logged, Disconnected."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    double.hangup_on_info.add(uuid)
    record = await ended(controller, uuid)
    await double.wait_for(lambda: bool(record.infos) and bool(record.infos[0].reply))
    assert [(i.seq, i.reply) for i in record.infos] == [(1, "-ERR Operation Failed")]
    assert record.outcome is Outcome.DISCONNECTED
    assert double.channels[uuid].infos == []


async def test_final_intent_lost_to_the_bye_is_not_success(
    double: EslDouble, controller_on
) -> None:
    """The final INFO races the caller's BYE (recorded: the hangup events come before
    uuid_send_info's -ERR): the final intent never left, so the call is Disconnected."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "FinishOnly"})
    double.hangup_on_info.add(uuid)
    record = await ended(controller, uuid)
    await double.wait_for(lambda: ("hangup", Outcome.DISCONNECTED) in bots.FinishOnly.seen)
    assert [(i.final, i.reply) for i in record.infos] == [(True, "-ERR Operation Failed")]
    assert record.final_at is None
    assert record.outcome is Outcome.DISCONNECTED
    assert "CallEnded" in bots.FinishOnly.seen


async def test_update_after_hangup_is_refused(double: EslDouble, controller_on) -> None:
    """send_update() after the caller's BYE raises CallEnded and sends nothing."""
    bots.UpdateAfterHangup.hung_up = asyncio.Event()
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "UpdateAfterHangup"})
    await double.wait_for(lambda: ("answered", uuid) in bots.UpdateAfterHangup.seen)
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    bots.UpdateAfterHangup.hung_up.set()
    await double.wait_for(lambda: any(s[0] == "CallEnded" for s in bots.UpdateAfterHangup.seen))
    assert record.outcome is Outcome.DISCONNECTED
    assert double.channels[uuid].infos == []


@pytest.mark.parametrize(
    ("bot", "error"),
    [("Broken", "bot bug"), ("BrokenInit", "bad bot options")],
    ids=["bot-raises", "constructor-raises"],
)
async def test_broken_bot_ends_call_as_failed(
    double: EslDouble, controller_on, bot: str, error: str
) -> None:
    """A bot that raises, or whose constructor raises: the call is hung up as Failed (never
    left parked) and the controller takes the next call."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": bot})
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.FAILED
    assert error in (record.error or "")
    assert double.commands(f"api uuid_kill {uuid}")
    second = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    await double.wait_for(lambda: len(double.channels[second].infos) == 3)


async def test_invalid_and_oversized_payloads_are_refused(double: EslDouble, controller_on) -> None:
    """Unserialisable, 'final', oversized and non-object payloads raise; the call goes on."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Payloads", "X-Edge-Transport": "tls"})
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 1)
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    errors = [entry for entry in bots.Payloads.seen if isinstance(entry, str)]
    assert "not JSON-serialisable" in errors[0]
    assert "'final' is reserved" in errors[1]
    assert "over the 16384-byte limit" in errors[2]
    assert "must be a JSON object" in errors[3]
    assert double.channels[uuid].infos == [{"intent": "Done", "final": True}]
    assert record.outcome is Outcome.SUCCESS


async def test_final_without_bye_we_hang_up(double: EslDouble, controller_on) -> None:
    """After the final intent and no BYE for call.final_bye_timeout, we send the BYE."""
    controller = await controller_on(call={"final_bye_timeout": 0.2})
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    record = await ended(controller, uuid)
    assert double.commands(f"api uuid_kill {uuid} NORMAL_CLEARING")
    assert record.outcome is Outcome.SUCCESS


async def test_bot_without_final_intent_fails(double: EslDouble, controller_on) -> None:
    """A bot returning without finish() is hung up and recorded as Failed."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Silent"})
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.FAILED
    assert record.error == "bot returned without a final intent"


async def test_dtmf_outside_collect_reaches_on_dtmf(double: EslDouble, controller_on) -> None:
    """A DTMF digit while no collect_digits() runs goes to the bot's on_dtmf hook."""
    double.media_seconds = 30
    await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "LongPlay"})
    await double.wait_for(lambda: bool(double.channels[uuid].pending))
    await double.press(uuid, "5")
    await double.wait_for(lambda: ("dtmf", "5") in bots.LongPlay.seen)
    await double.caller_hangup(uuid)


async def test_digit_during_collect_is_not_also_on_dtmf(double: EslDouble, controller_on) -> None:
    """A digit that collect_digits() takes (its DTMF event comes before the application's
    completion, recorded) does not also reach on_dtmf."""
    await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Collect"}, digits="3")
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 1)
    await double.caller_hangup(uuid)
    await double.wait_for(lambda: ("hangup", Outcome.SUCCESS) in bots.Collect.seen)
    assert double.channels[uuid].infos == [{"digit": "3", "final": True}]
    assert bots.Collect.seen == [("hangup", Outcome.SUCCESS)]  # no ("dtmf", "3")


async def test_collect_digits_timing_out_returns_no_digit(double: EslDouble, controller_on) -> None:
    """No digit: the recorded completion (read_result failure, no digits variable) makes
    collect_digits() return an empty string."""
    await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Collect"})
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 1)
    assert double.channels[uuid].infos == [{"digit": "", "final": True}]


async def test_the_controller_enables_info_when_the_dialplan_did_not(
    double: EslDouble, controller_on
) -> None:
    """CHANNEL_PARK without fs_send_unsupported_info: uuid_setvar (recorded +OK), then the
    call goes on."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"}, info_enabled=False)
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 3)
    await double.caller_hangup(uuid)
    assert (await ended(controller, uuid)).outcome is Outcome.SUCCESS
    assert double.commands(f"api uuid_setvar {uuid} fs_send_unsupported_info true")


async def test_answer_refused_for_a_missing_channel_fails_the_call(
    double: EslDouble, controller_on
) -> None:
    """The channel is gone before uuid_answer (recorded ``-ERROR``): the call ends Failed
    with that reply as its error."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    double.vanish(uuid)  # before the controller reads the park: no event ever tells it
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.FAILED
    assert "uuid_answer: -ERROR" in (record.error or "")
    assert record.answered_at is None


async def test_headers_sent_twice_reach_the_bot_in_order(double: EslDouble, controller_on) -> None:
    """An INVITE header sent three times (recorded form): every value, first one first."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "LongPlay", "X-Dup": ["a", "b c", "d"]})
    await double.wait_for(lambda: controller.calls.get(uuid) is not None)
    call = controller.calls.get(uuid)
    assert call is not None
    assert call.headers.getall("x-dup") == ["a", "b c", "d"]
    assert call.invite.header("X-Dup") == "a"
    assert "X-Dup-1" not in call.headers  # FreeSWITCH's sip_h_X-Dup-1 is no header
    await double.caller_hangup(uuid)


async def test_demo_bot_intent_follows_digit(double: EslDouble, controller_on) -> None:
    """The demo bot: answer, prompt + one digit, one update, final intent for that digit."""
    controller = await controller_on(routing={"default_bot": "demo"})
    uuid = await double.park(digits="2")
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 2)
    await double.caller_hangup(uuid)
    record = await ended(controller, uuid)
    assert double.channels[uuid].infos == [
        {"event": "digit", "digit": "2"},
        {"intent": "Support", "digit": "2", "final": True},
    ]
    assert record.outcome is Outcome.SUCCESS
    assert double.commands("sendmsg")  # play_and_get_digits went out as sendmsg


async def test_a_call_logs_one_info_line_when_it_ends(
    double: EslDouble, controller_on, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO a call is one line, written when it ends, with what an operator looks for."""
    caplog.set_level(logging.INFO, logger="ivagate")
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"}, caller="+16505550123")
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 3)
    await double.caller_hangup(uuid)
    await ended(controller, uuid)
    lines = [r for r in caplog.records if getattr(r, "uuid", None) == uuid]
    assert [r.levelname for r in lines] == ["INFO"]
    assert lines[0].getMessage() == (
        "call ended: Success (NORMAL_CLEARING), 3 INFOs; "
        "from +16505550123 to 15550001000 over udp, bot TwoUpdates"
    )
    assert getattr(lines[0], "outcome", None) == "Success"


async def test_call_log_lines_carry_uuid_and_call_id(
    double: EslDouble, controller_on, caplog: pytest.LogCaptureFixture
) -> None:
    """Every log line about a call names its UUID and SIP Call-ID, traceback included."""
    caplog.set_level(logging.DEBUG, logger="ivagate")
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "Broken"})
    await ended(controller, uuid)
    records = [r for r in caplog.records if getattr(r, "uuid", None) == uuid]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert len(lines) >= 3  # taken (DEBUG), the bot's exception, ended
    assert all(line["call_id"] == double.channels[uuid].call_id for line in lines)
    assert any("RuntimeError: bot bug" in line.get("exc", "") for line in lines)
    assert f"uuid={uuid}" in TextFormatter().format(records[0])
