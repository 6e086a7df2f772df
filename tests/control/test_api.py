"""The HTTP API served by a real aiohttp server, on a controller connected to the ESL double."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ivagate.api import create_app
from ivagate.api.errors import json_errors
from ivagate.api.keys import CONTROLLER
from ivagate.controller import Controller
from ivagate_kit.esl_double import EslDouble
from support.recordings import ESL_RECORDINGS

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

StartController = Callable[..., Awaitable[Controller]]
Api = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def double() -> AsyncIterator[EslDouble]:
    """The ESL double with media that never ends by itself: calls stay up until hung up."""
    server = EslDouble(ESL_RECORDINGS, media_seconds=60)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(controller_on: StartController) -> AsyncIterator[Api]:
    """Start a controller (settings overrides as keyword sections) and a client of its API."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**sections: Any) -> TestClient[Any, Any]:
        sections.setdefault("api", {"token": TOKEN})
        sections.setdefault("routing", {"default_bot": "LongPlay"})
        # Calls a test leaves up are ended at teardown without waiting for them.
        sections["call"] = {"drain_timeout": 0.05, **sections.get("call", {})}
        controller = await controller_on(**sections)
        client = TestClient(TestServer(create_app(controller, controller.settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def live_call(double: EslDouble, client: TestClient[Any, Any]) -> str:
    """Park a call and wait until its bot has answered it; returns its UUID."""
    uuid = await double.park()
    await double.wait_for(lambda: double.channels[uuid].state == "answered")
    return uuid


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["status"] == status
    return str(body["error"]["detail"])


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_probes_and_metrics_need_no_token(double: EslDouble, api: Api) -> None:
    """/healthz, /readyz and /metrics answer without a token; /readyz says ready."""
    client = await api()
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "esl_connected": True}
    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert metric(await metrics.text(), "ivagate_ready") == 1.0


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
async def test_calls_need_the_bearer_token(
    double: EslDouble, api: Api, headers: dict[str, str]
) -> None:
    """A missing, wrong or non-Bearer token gets a JSON 401 with a Bearer challenge."""
    client = await api()
    response = await client.get("/calls", headers=headers)
    assert "token" in await error_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post("/admin/drain", headers=headers)).status == 401
    assert double.global_vars["ivagate_ready"] == "true"


async def test_no_token_configured_refuses_every_call_route(double: EslDouble, api: Api) -> None:
    """Without IVAGATE_API__TOKEN the protected routes refuse every request."""
    client = await api(api={})
    detail = await error_of(await client.get("/calls", headers=AUTH), 401)
    assert "IVAGATE_API__TOKEN" in detail


async def test_list_and_get_calls(double: EslDouble, api: Api) -> None:
    """A live call is listed and found by its UUID and by its SIP Call-ID."""
    client = await api()
    uuid = await live_call(double, client)
    listing = await (await client.get("/calls", headers=AUTH)).json()
    assert [call["uuid"] for call in listing["calls"]] == [uuid]
    by_call_id = await client.get(f"/calls/{double.channels[uuid].call_id}", headers=AUTH)
    record = await by_call_id.json()
    assert (record["uuid"], record["bot"], record["ended"]) == (uuid, "LongPlay", False)


async def test_unknown_call_is_404(double: EslDouble, api: Api) -> None:
    """Every call route answers 404 for an id no call has."""
    client = await api()
    assert "nope" in await error_of(await client.get("/calls/nope", headers=AUTH), 404)
    for action in ("update", "finish", "hangup"):
        response = await client.post(f"/calls/nope/{action}", json={}, headers=AUTH)
        await error_of(response, 404)


async def test_update_sends_an_info(double: EslDouble, api: Api) -> None:
    """An update reaches FreeSWITCH as uuid_send_info and is recorded on the call."""
    client = await api()
    uuid = await live_call(double, client)
    response = await client.post(f"/calls/{uuid}/update", json={"n": 1, "q": "it's"}, headers=AUTH)
    assert response.status == 200
    record = await response.json()
    assert [(i["seq"], i["final"], i["reply"]) for i in record["infos"]] == [
        (1, False, "+OK Success")
    ]
    assert double.channels[uuid].infos == [{"n": 1, "q": "it's"}]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 400, "not JSON"),
        (b'["a", "list"]', 400, "JSON object"),
        (b'{"final": true}', 400, "reserved"),
        (b'{"x": NaN}', 400, "not JSON-serialisable"),
        (b'{"blob": "' + b"x" * 2000 + b'"}', 413, "limit"),
    ],
    ids=["bad-json", "not-object", "final", "nan", "too-large"],
)
async def test_refused_update_changes_nothing(
    double: EslDouble, api: Api, body: bytes, status: int, detail: str
) -> None:
    """A refused payload gets 400/413, sends nothing, and the call goes on."""
    client = await api(call={"info_max_bytes": 1024})
    uuid = await live_call(double, client)
    response = await client.post(
        f"/calls/{uuid}/update", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert detail in await error_of(response, status)
    assert double.channels[uuid].infos == []
    assert (await client.post(f"/calls/{uuid}/update", json={"ok": 1}, headers=AUTH)).status == 200
    assert double.channels[uuid].infos == [{"ok": 1}]


@pytest.mark.parametrize(("transport", "status"), [("udp", 413), ("tls", 200)])
async def test_udp_calls_take_smaller_infos(
    double: EslDouble, api: Api, transport: str, status: int
) -> None:
    """A 1 KB payload is over call.udp_info_max_bytes (800) on a call RingCX placed over
    UDP, and within call.info_max_bytes over TLS."""
    client = await api()
    uuid = await double.park(headers={"X-Edge-Transport": transport})
    await double.wait_for(lambda: double.channels[uuid].state == "answered")
    response = await client.post(f"/calls/{uuid}/update", json={"blob": "x" * 1000}, headers=AUTH)
    assert response.status == status
    if status == 413:
        assert "800-byte limit" in await error_of(response, 413)
        assert double.channels[uuid].infos == []


async def test_body_over_the_request_limit_is_413(double: EslDouble, api: Api) -> None:
    """A request body over aiohttp's client_max_size gets a JSON 413; the call goes on."""
    client = await api()
    uuid = await live_call(double, client)
    response = await client.post(f"/calls/{uuid}/update", data=b"x" * (2 << 20), headers=AUTH)
    await error_of(response, 413)
    assert double.channels[uuid].state == "answered"


async def test_finish_then_409(double: EslDouble, api: Api) -> None:
    """finish sends the final intent, answers after RingCX's BYE; later actions get 409."""
    client = await api()
    uuid = await live_call(double, client)
    finishing = asyncio.ensure_future(
        client.post(f"/calls/{uuid}/finish", json={"intent": "Sales"}, headers=AUTH)
    )
    await double.wait_for(lambda: bool(double.channels[uuid].infos))
    assert double.channels[uuid].infos == [{"intent": "Sales", "final": True}]
    for action in ("finish", "update"):
        again = await client.post(f"/calls/{uuid}/{action}", json={"n": 1}, headers=AUTH)
        assert "already sent" in await error_of(again, 409)
    await double.caller_hangup(uuid)
    response = await finishing
    assert response.status == 200
    record = await response.json()
    assert (record["ended"], record["outcome"]) == (True, "Success")
    for action in ("update", "finish", "hangup"):
        response = await client.post(f"/calls/{uuid}/{action}", json={"n": 2}, headers=AUTH)
        assert "ended" in await error_of(response, 409)
    assert len(double.channels[uuid].infos) == 1


async def test_hangup_ends_the_call(double: EslDouble, api: Api) -> None:
    """hangup sends uuid_kill with the cause; the call ends Failed, with the reason noted."""
    client = await api()
    uuid = await live_call(double, client)
    bad = await client.post(f"/calls/{uuid}/hangup", json={"cause": "x; y"}, headers=AUTH)
    assert "cause" in await error_of(bad, 400)
    response = await client.post(f"/calls/{uuid}/hangup", json={"cause": "USER_BUSY"}, headers=AUTH)
    assert response.status == 200
    record = await response.json()
    assert (record["ended"], record["outcome"]) == (True, "Failed")
    assert "HTTP API" in record["error"]
    assert double.commands(f"api uuid_kill {uuid} USER_BUSY")
    assert double.channels[uuid].hangup_cause == "USER_BUSY"


async def test_drain_closes_the_gate(double: EslDouble, api: Api) -> None:
    """POST /admin/drain sets ivagate_ready=false; the active call goes on; /readyz is 503."""
    client = await api()
    uuid = await live_call(double, client)
    response = await client.post("/admin/drain", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"draining": True, "ready": False, "active_calls": 1}
    assert double.global_vars["ivagate_ready"] == "false"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["ready"] is False
    assert (await client.post(f"/calls/{uuid}/update", json={"n": 1}, headers=AUTH)).status == 200


async def test_readyz_is_503_without_the_event_socket(double: EslDouble, api: Api) -> None:
    """With the Event Socket connection down, /readyz says 503 and why."""
    client = await api()
    double.refuse = True
    await double.drop()
    await double.wait_for(lambda: not client.app[CONTROLLER].connected)
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert await ready.json() == {"ready": False, "esl_connected": False}
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "ivagate_ready") == 0.0


async def test_metrics_count_outcomes(double: EslDouble, api: Api) -> None:
    """/metrics shows the active call, then counts it by outcome once it ended."""
    client = await api()
    before = await (await client.get("/metrics")).text()
    uuid = await live_call(double, client)
    during = await (await client.get("/metrics")).text()
    assert metric(during, "ivagate_active_calls") == 1.0
    finishing = asyncio.ensure_future(client.post(f"/calls/{uuid}/finish", headers=AUTH))
    await double.wait_for(lambda: bool(double.channels[uuid].infos))
    await double.caller_hangup(uuid)
    assert (await finishing).status == 200
    await double.wait_for(lambda: not client.app[CONTROLLER].calls.active())
    after = await (await client.get("/metrics")).text()
    assert metric(after, "ivagate_active_calls") == 0.0
    name = "ivagate_calls_total"
    assert metric(after, name, outcome="Success") == metric(before, name, outcome="Success") + 1


async def test_unknown_route_and_method_are_json(double: EslDouble, api: Api) -> None:
    """aiohttp's own 404 and 405 come back in the JSON error shape."""
    client = await api()
    await error_of(await client.get("/nowhere", headers=AUTH), 404)
    response = await client.delete("/calls", headers=AUTH)
    await error_of(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_unexpected_error_is_a_logged_json_500(caplog: pytest.LogCaptureFixture) -> None:
    """An exception escaping a handler becomes a JSON 500 and its traceback is logged."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("handler bug")

    app = web.Application(middlewares=[json_errors])
    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        assert "controller log" in await error_of(await client.get("/broken"), 500)
    (record,) = [r for r in caplog.records if r.name == "ivagate.api.errors"]
    assert record.exc_info is not None
    assert "handler bug" in str(record.exc_info[1])
