"""Routing, the ready gate, drain and the Event Socket connection coming and going."""

from __future__ import annotations

import asyncio
import time

from ivagate.bots.base import Outcome
from ivagate.calls.records import CallRecord
from ivagate.controller import Controller
from ivagate_kit.esl_double import EslDouble
from support import bots


async def record_of(controller: Controller, uuid: str, double: EslDouble) -> CallRecord:
    """The call's record once it has ended."""
    await double.wait_for(lambda: controller.calls.get(uuid) is not None)
    call = controller.calls.get(uuid)
    assert call is not None
    await asyncio.wait_for(call.wait_ended(), 5)
    return call.record


async def test_unknown_did_gets_404_without_answer(double: EslDouble, controller_on) -> None:
    """No DID rule and no default bot: respond 404 (recorded), never uuid_answer."""
    controller = await controller_on(
        routing={"default_bot": None, "dids": {"15550009999": "Silent"}}
    )
    uuid = await double.park(did="15550001000")
    record = await record_of(controller, uuid, double)
    (sent,) = double.commands(f"sendmsg {uuid}")
    assert "execute-app-name: respond\nexecute-app-arg: 404 Not Found\n" in sent
    assert not double.commands(f"bgapi uuid_answer {uuid}")
    assert double.channels[uuid].hangup_cause == "UNALLOCATED_NUMBER"
    assert record.outcome is Outcome.FAILED
    assert record.bot is None and "404" in (record.error or "")
    assert record.srtp is None  # never answered: no answer to tell


async def test_routing_by_header_then_did_then_default(double: EslDouble, controller_on) -> None:
    """The bot header wins over the DID, the DID over the default bot."""
    controller = await controller_on(
        routing={"dids": {"15550002000": "Silent"}, "default_bot": "Broken"},
        call={"final_bye_timeout": 0.1},
    )
    by_header = await double.park(did="15550002000", headers={"X-Bot-Id": "TwoUpdates"})
    by_did = await double.park(did="15550002000")
    by_default = await double.park(did="15550003000")
    bots = [(await record_of(controller, u, double)).bot for u in (by_header, by_did, by_default)]
    assert bots == ["TwoUpdates", "Silent", "Broken"]


async def test_header_naming_unknown_bot_is_404(double: EslDouble, controller_on) -> None:
    """A bot header naming no known bot is rejected with 404, not sent to the default."""
    controller = await controller_on()
    uuid = await double.park(headers={"X-Bot-Id": "nobody"})
    record = await record_of(controller, uuid, double)
    assert "unknown bot 'nobody'" in (record.error or "")
    assert double.channels[uuid].hangup_cause == "UNALLOCATED_NUMBER"


async def test_ready_gate_and_drain(double: EslDouble, controller_on) -> None:
    """Connected -> ivagate_ready=true; drain -> false while the active call still finishes."""
    double.media_seconds = 30
    controller = await controller_on()
    assert double.global_vars["ivagate_ready"] == "true" and controller.ready
    uuid = await double.park(headers={"X-Bot-Id": "LongPlay"})
    await double.wait_for(lambda: bool(double.channels[uuid].pending))
    await controller.drain()
    assert double.global_vars["ivagate_ready"] == "false"
    assert not controller.ready and controller.draining
    assert controller.calls.get(uuid) in controller.calls.active()
    await double.caller_hangup(uuid)
    await asyncio.wait_for(controller.wait_idle(), 5)


async def test_connection_drop_ends_calls_as_failed(double: EslDouble, controller_on) -> None:
    """ESL drops mid-call: after reconnecting, listed channels are killed, all end Failed."""
    double.media_seconds = 30
    controller = await controller_on()
    still_up = await double.park(headers={"X-Bot-Id": "LongPlay"})
    gone = await double.park(headers={"X-Bot-Id": "LongPlay"})
    await double.wait_for(lambda: len(controller.calls.active()) == 2)
    await double.wait_for(lambda: all(double.channels[u].pending for u in (still_up, gone)))
    double.refuse = True  # FreeSWITCH unreachable for a while
    await double.drop()
    await double.wait_for(lambda: not controller.connected)
    assert not controller.ready
    double.vanish(gone)  # the caller hung up while nobody listened
    double.refuse = False
    await double.wait_for(lambda: controller.ready)
    first = await record_of(controller, still_up, double)
    second = await record_of(controller, gone, double)
    assert double.commands("api show channels as json")
    assert double.commands(f"api uuid_kill {still_up}")
    assert not double.commands(f"api uuid_kill {gone}")
    assert first.outcome is second.outcome is Outcome.FAILED
    assert first.error == second.error == "Event Socket connection lost"
    assert double.global_vars["ivagate_ready"] == "true"


async def test_outage_that_left_no_channel_ends_every_call_failed(
    double: EslDouble, controller_on
) -> None:
    """Every call ended during the outage: the recorded empty listing (no ``rows``), no
    uuid_kill, all Failed, and the node is ready again."""
    double.media_seconds = 30
    controller = await controller_on()
    uuids = [await double.park(headers={"X-Bot-Id": "LongPlay"}) for _ in range(2)]
    await double.wait_for(lambda: all(double.channels[u].pending for u in uuids))
    double.refuse = True
    await double.drop()
    await double.wait_for(lambda: not controller.connected)
    for uuid in uuids:
        double.vanish(uuid)
    double.refuse = False
    await double.wait_for(lambda: controller.ready)
    records = [await record_of(controller, uuid, double) for uuid in uuids]
    assert double.commands("api show channels as json")
    assert not double.commands("api uuid_kill")
    assert [r.outcome for r in records] == [Outcome.FAILED] * 2


async def test_reconnects_with_backoff_while_refused(double: EslDouble, controller_on) -> None:
    """While FreeSWITCH refuses connections the controller keeps retrying, then recovers."""
    controller = await controller_on()
    double.refuse = True
    await double.drop()
    await double.wait_for(lambda: not controller.connected)
    await asyncio.sleep(0.3)  # a few backoff rounds against the refusing server
    assert not controller.connected
    double.refuse = False
    await double.wait_for(lambda: controller.ready)


async def test_ready_lease_is_renewed_while_ready_and_lapses_after(
    double: EslDouble, controller_on
) -> None:
    """The lease ivagate_ready_until (µs) stays esl.ready_lease ahead of the clock while the
    controller lives, and is not renewed once it stops (as after kill -9)."""
    lease = {"ready_refresh": 0.05, "ready_lease": 0.5}
    controller = await controller_on(esl=lease)

    def until() -> float:
        return int(double.global_vars["ivagate_ready_until"]) / 1e6

    first = until()
    assert time.time() < first <= time.time() + 0.5
    await double.wait_for(lambda: until() > first + 0.1)
    assert double.global_vars["ivagate_ready"] == "true"
    await controller.stop()
    renewals = len(double.commands("api global_setvar ivagate_ready_until="))
    await asyncio.sleep(0.2)
    assert len(double.commands("api global_setvar ivagate_ready_until=")) == renewals
    assert until() < time.time() + 0.5


async def test_call_not_answered_in_time_fails_once_with_480(
    double: EslDouble, controller_on
) -> None:
    """A bot slower than call.answer_deadline: the call ends NO_ANSWER (SIP 480, which the
    edge relays instead of running the call again), Failed; the late answer() gets CallEnded."""
    controller = await controller_on(
        call={"answer_deadline": 0.2, "bot_options": {"Slow": {"delay": 0.6}}}
    )
    uuid = await double.park(headers={"X-Bot-Id": "Slow"})
    record = await record_of(controller, uuid, double)
    assert double.commands(f"api uuid_kill {uuid} NO_ANSWER")
    assert record.outcome is Outcome.FAILED
    assert record.error == "not answered within call.answer_deadline (0.2 s)"
    await double.wait_for(lambda: bots.Slow.seen == ["CallEnded", ("hangup", Outcome.FAILED)])
    assert not double.commands(f"bgapi uuid_answer {uuid}")
