"""The controller and the edges' INFO reports (issue 15): each INFO waits for RingCX's answer
before the next leaves, the record and /metrics show the answers, and the outcome follows the
answer to the final intent.

The edge is a stand-in writing report lines as kamailio.cfg's route[INFO_REPORT] does; the
controller runs on the ESL double.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import generate_latest
from test_controller_calls import ended

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit.esl_double import EslDouble

TOKEN = "edge-token"


class FakeEdge:
    """An edge: one TCP connection to the controller's report listener, report lines on it."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.cseq = 100

    async def connect(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        _, self.writer = await asyncio.open_connection(host, int(port))

    def report(
        self, call_id: str, status: int, end: str = "reply", reason: str = "OK", token: str = TOKEN
    ) -> None:
        assert self.writer is not None
        self.cseq += 1
        now = time.time()
        times = f"{now - 0.012:.6f} {now:.6f}"
        line = f"{token} info {end} {status} {times} {self.cseq} {call_id} {reason}\n"
        self.writer.write(line.encode())

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()


@pytest.fixture
async def edge() -> AsyncIterator[FakeEdge]:
    fake = FakeEdge()
    yield fake
    await fake.stop()


@pytest.fixture
async def reporting(
    edge: FakeEdge, controller_on: Callable[..., Awaitable[Controller]]
) -> Callable[..., Awaitable[Controller]]:
    """A controller taking ``edge``'s reports, the edge connected to it."""

    async def start(report_timeout: float = 5.0) -> Controller:
        listen = f"127.0.0.1:{free_port()}"
        controller = await controller_on(
            edge={
                "listen": listen,
                "edges": ["127.0.0.1"],
                "token": TOKEN,
                "report_timeout": report_timeout,
            }
        )
        await edge.connect(listen)
        return controller

    return start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def call_id_of(controller: Controller, double: EslDouble, uuid: str) -> str:
    await double.wait_for(lambda: controller.calls.get(uuid) is not None)
    call = controller.calls.get(uuid)
    assert call is not None
    return call.sip_call_id


async def test_next_info_leaves_after_the_previous_answer(
    reporting: Callable[..., Awaitable[Controller]], edge: FakeEdge, double: EslDouble
) -> None:
    """Back-to-back updates: each uuid_send_info waits for the report of the one before; the
    record carries every answer; /metrics counts them by status."""
    controller = await reporting()
    uuid = await double.park(headers={"X-Bot-Id": "TwoUpdates"})
    call_id = await call_id_of(controller, double, uuid)
    infos = double.channels[uuid].infos
    await double.wait_for(lambda: len(infos) == 1)
    await asyncio.sleep(0.2)
    assert len(infos) == 1  # the second waits for RingCX's answer to the first
    edge.report(call_id, 200, token="wrong-token")  # not taken, and the edge is cut off
    await asyncio.sleep(0.1)
    assert len(infos) == 1
    await edge.connect(controller.settings.edge.listen or "")
    edge.report(call_id, 200)
    await double.wait_for(lambda: len(infos) == 2)
    edge.report(call_id, 481, reason="Call/Transaction Does Not Exist")
    await double.wait_for(lambda: len(infos) == 3)
    edge.report(call_id, 200)
    await asyncio.sleep(0.05)
    await double.caller_hangup(uuid)  # RingCX's BYE after the final intent
    record = await ended(controller, uuid)
    assert [(i.result, i.sip_status) for i in record.infos] == [
        ("reply", 200),
        ("reply", 481),
        ("reply", 200),
    ]
    assert record.infos[0].latency == pytest.approx(0.012, abs=0.001)
    assert record.as_json()["infos"][1]["reason"] == "Call/Transaction Does Not Exist"
    assert record.outcome is Outcome.SUCCESS
    metrics = generate_latest(controller.metrics.registry).decode()
    assert 'ivagate_info_answers_total{status="200"} 2.0' in metrics
    assert 'ivagate_info_answers_total{status="481"} 1.0' in metrics


@pytest.mark.parametrize(
    "answer",
    [
        (481, "reply", "final intent: RingCX answered 481 Gone"),
        (500, "reply", "final intent: RingCX answered 500 Gone"),
        (408, "timeout", "final intent: RingCX did not answer (timeout at the edge)"),
    ],
)
async def test_refused_final_intent_fails_the_call_at_once(
    reporting: Callable[..., Awaitable[Controller]],
    edge: FakeEdge,
    double: EslDouble,
    answer: tuple[int, str, str],
) -> None:
    """RingCX answers the final intent 4xx/5xx or not at all: the controller hangs up without
    waiting for a BYE, and the call is Failed with the answer in its error."""
    status, end, error = answer
    controller = await reporting()
    uuid = await double.park(headers={"X-Bot-Id": "FinishOnly"})
    call_id = await call_id_of(controller, double, uuid)
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 1)
    edge.report(call_id, status, end=end, reason="Gone")
    record = await ended(controller, uuid)
    assert double.commands(f"api uuid_kill {uuid}")
    assert record.outcome is Outcome.FAILED
    assert record.error == error


async def test_no_report_fails_the_final_intent(
    reporting: Callable[..., Awaitable[Controller]], double: EslDouble
) -> None:
    """No report within edge.report_timeout: the final intent counts as not delivered."""
    controller = await reporting(report_timeout=0.3)
    uuid = await double.park(headers={"X-Bot-Id": "FinishOnly"})
    record = await ended(controller, uuid)
    assert record.outcome is Outcome.FAILED
    assert record.infos[0].result == "no-report"
    assert "no report from the edge within 0.3 s" in (record.error or "")
    metrics = generate_latest(controller.metrics.registry).decode()
    assert 'ivagate_info_answers_total{status="no_report"} 1.0' in metrics


@pytest.mark.parametrize(("status", "outcome"), [(200, Outcome.SUCCESS), (500, Outcome.FAILED)])
async def test_bye_before_the_final_report_waits_for_it(
    reporting: Callable[..., Awaitable[Controller]],
    edge: FakeEdge,
    double: EslDouble,
    status: int,
    outcome: Outcome,
) -> None:
    """RingCX's BYE reaches the controller before the edge's report of the final intent: the
    outcome waits for the report and follows it."""
    controller = await reporting()
    uuid = await double.park(headers={"X-Bot-Id": "FinishOnly"})
    call_id = await call_id_of(controller, double, uuid)
    await double.wait_for(lambda: len(double.channels[uuid].infos) == 1)
    await double.caller_hangup(uuid)
    call = controller.calls.get(uuid)
    assert call is not None
    await double.wait_for(lambda: call.ended)
    assert call.record.outcome is None
    edge.report(call_id, status)
    record = await ended(controller, uuid)
    assert record.outcome is outcome
