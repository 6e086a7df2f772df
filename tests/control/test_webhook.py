"""The ``webhook`` bot against a real aiohttp server playing the webhook."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import ValidationError

from ivagate.bots.base import CallEnded, Outcome, PayloadError
from ivagate.bots.webhook import WebhookBot, WebhookOptions
from ivagate.controller import Controller
from ivagate_kit.esl_double import EslDouble
from support.edge import free_port
from support.stand_in_call import StandInIdentity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RecordingCall(StandInIdentity):
    """A ``Call`` that records what the bot asked of it, in order."""

    def __init__(self, digits: str = "", play_error: Exception | None = None) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self.digits = digits
        self.play_error = play_error
        self.headers = CIMultiDictProxy(
            CIMultiDict([("X-Bot-Id", "hook"), ("Via", "SIP/2.0/TLS a"), ("Via", "SIP/2.0/TLS b")])
        )
        self.raw_headers: Mapping[str, str] = {}

    async def answer(self) -> None:
        self.actions.append(("answer",))

    def count_failure(self, reason: str) -> None:
        self.actions.append(("failure", reason))

    async def play(self, source: str) -> None:
        if self.play_error:
            raise self.play_error
        self.actions.append(("play", source))

    async def say(self, text: str) -> None:
        self.actions.append(("say", text))

    async def collect_digits(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the Call protocol names it so
        prompt: str | None = None,
        terminators: str = "#",
    ) -> str:
        self.actions.append(("gather", max_digits, timeout, prompt, terminators))
        return self.digits

    async def send_update(self, payload: Mapping[str, Any]) -> None:
        if "final" in payload:
            raise PayloadError("'final' is reserved: use finish()")
        self.actions.append(("update", dict(payload)))

    async def finish(self, payload: Mapping[str, Any]) -> None:
        if len(json.dumps(payload)) > 100:
            raise PayloadError("payload is over 100 bytes")
        self.actions.append(("finish", dict(payload)))

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.actions.append(("hangup", cause))


class Webhook:
    """A real HTTP server: records each request, answers with the scripted handlers in turn."""

    def __init__(self) -> None:
        self.requests: list[tuple[CIMultiDictProxy[str], bytes]] = []
        self.script: list[Handler] = []
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.server = TestServer(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.headers, await request.read()))
        return await self.script.pop(0)(request)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


def actions(*items: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"actions": list(items)})

    return handler


def status(code: int, body: str = "") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=body)

    return handler


async def ignored(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    await hook.server.start_server()
    yield hook
    await hook.server.close()


SECRET = "s3cret"


def hook_options(url: str, **options: Any) -> dict[str, Any]:
    """Options for a webhook on this machine's loopback: plain HTTP allowed."""
    return {"url": url, "secret": SECRET, "allow_http": True, **options}


def make_bot(url: str, **options: Any) -> WebhookBot:
    return WebhookBot(
        hook_options(url, **{"timeout": 2.0, "retries": 1, "idle_timeout": 0.2, **options})
    )


async def run(bot: WebhookBot, call: RecordingCall, outcome: Outcome = Outcome.SUCCESS) -> None:
    try:
        await bot.on_call_start(call)
    finally:
        await bot.on_hangup(call, outcome)


FALLBACK = ("finish", {"error": "webhook_unavailable"})
UNAVAILABLE = ("failure", "unavailable")  # counted in ivagate_bot_failures_total


async def test_full_flow_runs_actions_and_posts_events(webhook: Webhook) -> None:
    """Events start, gather, hangup are posted and every listed action reaches the call."""
    webhook.script = [
        actions(
            {"action": "say", "text": "Press a key"},
            {"action": "update", "payload": {"step": 1}},
            {"action": "gather", "max_digits": 2, "timeout": 3, "terminators": "#*"},
            {"action": "play", "source": "never/reached.wav"},
        ),
        actions({"action": "finish", "payload": {"intent": "sales"}}),
        ignored,
    ]
    call = RecordingCall(digits="7")
    await run(make_bot(webhook.url), call)

    assert call.actions == [
        ("answer",),
        ("say", "Press a key"),
        ("update", {"step": 1}),
        ("gather", 2, 3.0, None, "#*"),
        ("finish", {"intent": "sales"}),
    ]
    start, gather, hangup = webhook.events
    assert start["version"] == 1
    assert start["event"] == "start"
    assert start["id"] == f"{call.uuid}:1"
    assert start["call"] == {
        "uuid": call.uuid,
        "sip_call_id": call.sip_call_id,
        "did": call.did,
        "caller": call.caller,
        "transport": "tls",
        "source": call.source,
        "srtp": True,
    }
    assert start["data"]["headers"] == {
        "X-Bot-Id": ["hook"],
        "Via": ["SIP/2.0/TLS a", "SIP/2.0/TLS b"],
    }
    assert (gather["event"], gather["data"], gather["id"]) == (
        "gather",
        {"digits": "7"},
        f"{call.uuid}:2",
    )
    assert (hangup["event"], hangup["data"]) == ("hangup", {"outcome": "Success"})
    assert webhook.requests[0][0]["Content-Type"] == "application/json"


async def test_signature_is_hmac_sha256_of_timestamp_and_body(webhook: Webhook) -> None:
    """Each request carries a timestamp and its HMAC-SHA256 signature."""
    webhook.script = [actions({"action": "hangup", "cause": "USER_BUSY"}), ignored]
    call = RecordingCall()
    await run(make_bot(webhook.url), call)

    assert call.actions[-1] == ("hangup", "USER_BUSY")
    for headers, body in webhook.requests:
        timestamp = headers["X-Ivagate-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert headers["X-Ivagate-Signature"] == "sha256=" + expected.hexdigest()


@pytest.fixture
def unreachable_url() -> str:
    """A loopback URL nothing listens on (a free port)."""
    return f"http://127.0.0.1:{free_port()}/hook"


async def test_unreachable_webhook_gets_the_fallback(
    unreachable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listening at the URL: the call is finished with the fallback payload, logged."""
    call = RecordingCall()
    await run(make_bot(unreachable_url), call)
    assert call.actions == [("answer",), UNAVAILABLE, FALLBACK]
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "fallback" in error.getMessage()
    assert (error.uuid, error.call_id) == (call.uuid, call.sip_call_id)


async def test_server_error_is_retried_then_falls_back(webhook: Webhook) -> None:
    """A 500 reply is retried ``retries`` times, then the fallback ends the call."""
    webhook.script = [status(500), status(503), ignored]
    call = RecordingCall()
    await run(make_bot(webhook.url), call)
    assert call.actions == [("answer",), UNAVAILABLE, FALLBACK]
    assert [e["event"] for e in webhook.events] == ["start", "start", "hangup"]
    assert webhook.events[0]["id"] == webhook.events[1]["id"]


async def test_server_error_then_success_carries_on(webhook: Webhook) -> None:
    """A retry that succeeds carries out that reply's actions."""
    webhook.script = [status(502), actions({"action": "finish", "payload": {"ok": 1}}), ignored]
    call = RecordingCall()
    await run(make_bot(webhook.url), call)
    assert call.actions == [("answer",), ("finish", {"ok": 1})]


@pytest.mark.parametrize(
    "handler",
    [
        status(200, "{not json"),
        status(200, '{"actions": [{"action": "dance"}]}'),
        status(200, '{"actions": [{"action": "play", "source": "a\\nb"}]}'),
        status(200, '{"actions": [{"action": "play", "source": "two words.wav"}]}'),
        status(200, '{"actions": [{"action": "finish", "paylod": {}}]}'),
        status(404),
    ],
    ids=["bad-json", "unknown-action", "control-char", "space", "unknown-field", "http-404"],
)
async def test_broken_reply_falls_back_without_retry(webhook: Webhook, handler: Handler) -> None:
    """A reply that breaks the protocol gets the fallback at once, not a retry."""
    webhook.script = [handler, ignored]
    call = RecordingCall()
    await run(make_bot(webhook.url), call)
    assert call.actions == [("answer",), UNAVAILABLE, FALLBACK]
    assert [e["event"] for e in webhook.events] == ["start", "hangup"]


async def test_timeout_is_retried_then_falls_back(webhook: Webhook) -> None:
    """A webhook slower than ``timeout`` is retried, then the call gets the fallback."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"actions": []})

    webhook.script = [slow, slow, ignored]
    call = RecordingCall()
    try:
        await run(make_bot(webhook.url, timeout=0.2), call)
    finally:
        release.set()
    assert call.actions == [("answer",), UNAVAILABLE, FALLBACK]
    assert [e["event"] for e in webhook.events] == ["start", "start", "hangup"]


async def test_refused_payload_posts_error_and_call_goes_on(webhook: Webhook) -> None:
    """An update using ``final`` is refused, posted as an ``error`` event, and the flow goes on."""
    bad = {"action": "update", "payload": {"final": True}}
    webhook.script = [
        actions(bad, {"action": "say", "text": "never"}),
        actions({"action": "finish", "payload": {"intent": "x"}}),
        ignored,
    ]
    call = RecordingCall()
    await run(make_bot(webhook.url), call)
    assert call.actions == [("answer",), ("finish", {"intent": "x"})]
    error = webhook.events[1]
    assert error["event"] == "error"
    assert error["data"]["action"] == bad
    assert "reserved" in error["data"]["reason"]


async def test_dtmf_event_then_idle_fallback(webhook: Webhook) -> None:
    """With no ending action, a digit is posted as ``dtmf``; silence then gets the fallback."""
    webhook.script = [actions(), actions(), ignored]
    call = RecordingCall()
    bot = make_bot(webhook.url, idle_timeout=0.5)
    await bot.on_dtmf(call, "5")
    await run(bot, call)
    assert [e["event"] for e in webhook.events] == ["start", "dtmf", "hangup"]
    assert webhook.events[1]["data"] == {"digit": "5"}
    assert call.actions == [("answer",), ("failure", "idle"), FALLBACK]


async def test_oversized_fallback_payload_hangs_up(unreachable_url: str) -> None:
    """A fallback payload the call refuses ends the call with a hangup, never a stuck call."""
    call = RecordingCall()
    bot = make_bot(unreachable_url, fallback={"action": "finish", "payload": {"e": "x" * 200}})
    await run(bot, call, Outcome.FAILED)
    assert call.actions == [("answer",), UNAVAILABLE, ("hangup", "NORMAL_CLEARING")]


async def test_caller_hangup_ends_the_flow(webhook: Webhook) -> None:
    """``CallEnded`` during an action propagates: no fallback is attempted on a dead call."""
    webhook.script = [actions({"action": "play", "source": "x.wav"}), ignored]
    call = RecordingCall(play_error=CallEnded("caller hung up"))
    with pytest.raises(CallEnded):
        await run(make_bot(webhook.url), call, Outcome.DISCONNECTED)
    assert call.actions == [("answer",)]
    assert webhook.events[-1]["data"] == {"outcome": "Disconnected"}


@pytest.mark.parametrize(
    "fallback",
    [
        {"action": "say", "text": "hi"},
        {"action": "finish", "payload": 1},
        {"action": "hangup", "cause": "a b"},
    ],
)
def test_fallback_must_end_the_call(fallback: dict[str, Any]) -> None:
    """A fallback that is not a valid ``finish`` or ``hangup`` is refused with the options."""
    with pytest.raises(ValidationError, match="fallback"):
        WebhookOptions.model_validate(hook_options("https://hooks.example/", fallback=fallback))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "https://hooks.example/"}, "secret"),
        ({"url": "https://hooks.example/", "secret": ""}, "secret"),
        ({"secret": SECRET}, "url"),
        ({"url": "http://hooks.example/", "secret": SECRET}, "is not https://"),
    ],
    ids=["no-secret", "empty-secret", "no-url", "http"],
)
def test_options_need_a_secret_and_https(options: dict[str, Any], message: str) -> None:
    """No secret, no URL or an http:// URL without allow_http: refused, naming the field."""
    with pytest.raises(ValidationError, match=message):
        WebhookOptions.model_validate(options)


async def test_webhook_bot_drives_a_real_call(
    webhook: Webhook, double: EslDouble, controller_on: Callable[..., Awaitable[Controller]]
) -> None:
    """Through the controller and the ESL double: the webhook's actions reach FreeSWITCH."""
    webhook.script = [
        actions({"action": "say", "text": "Press one"}, {"action": "gather", "timeout": 2}),
        actions(
            {"action": "update", "payload": {"menu": "billing"}},
            {"action": "finish", "payload": {"intent": "Billing"}},
        ),
        ignored,
    ]
    await controller_on(
        call={"bot_options": {"webhook": hook_options(webhook.url)}},
        routing={"default_bot": "webhook"},
    )
    uuid = await double.park(digits="1", headers={"X-Custom": "a b"})
    channel = double.channels[uuid]
    await double.wait_for(lambda: len(channel.infos) == 2)
    await double.caller_hangup(uuid)
    await double.wait_for(lambda: len(webhook.requests) == 3)

    assert channel.infos == [{"menu": "billing"}, {"intent": "Billing", "final": True}]
    assert double.commands(f"api uuid_answer {uuid}") or double.commands(
        f"bgapi uuid_answer {uuid}"
    )
    start, gather, hangup = webhook.events
    assert start["call"]["uuid"] == uuid
    assert start["data"]["headers"]["X-Custom"] == ["a b"]
    assert gather["data"] == {"digits": "1"}
    assert hangup["data"] == {"outcome": "Success"}


async def test_caller_digit_reaches_the_webhook_through_the_controller(
    webhook: Webhook, double: EslDouble, controller_on: Callable[..., Awaitable[Controller]]
) -> None:
    """A DTMF event outside gather is posted as ``dtmf``; its reply's hangup ends the call."""
    webhook.script = [
        actions(),
        actions({"action": "hangup", "cause": "USER_BUSY"}),
        ignored,
    ]
    await controller_on(
        call={"bot_options": {"webhook": hook_options(webhook.url)}},
        routing={"default_bot": "webhook"},
    )
    uuid = await double.park()
    await double.wait_for(lambda: len(webhook.requests) == 1)
    await double.press(uuid, "4")
    await double.wait_for(lambda: len(webhook.requests) == 3)
    assert [e["event"] for e in webhook.events] == ["start", "dtmf", "hangup"]
    assert webhook.events[1]["data"] == {"digit": "4"}
    assert webhook.events[2]["data"] == {"outcome": "Failed"}
    assert double.channels[uuid].hangup_cause == "USER_BUSY"
