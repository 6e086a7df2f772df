"""Controller fixtures: the recorded-bytes ESL double and a controller connected to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
import uvloop

from ivagate.controller import Controller
from ivagate.settings import Settings
from ivagate_kit.esl_double import EslDouble
from support.recordings import ESL_RECORDINGS

TEST_BOTS = {
    name: f"support.bots:{name}"
    for name in (
        "TwoUpdates",
        "LongPlay",
        "UpdateAfterHangup",
        "Broken",
        "BrokenInit",
        "Collect",
        "Daydream",
        "FinishOnly",
        "Payloads",
        "Silent",
        "Slow",
    )
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every controller test runs on uvloop (what ``ivagate run`` uses) and on asyncio's
    own loop (what an application embedding the controller may use)."""
    return {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


@pytest.fixture
async def double() -> AsyncIterator[EslDouble]:
    server = EslDouble(ESL_RECORDINGS)
    await server.start()
    yield server
    await server.stop()


def make_settings(double: EslDouble, **sections: Any) -> Settings:
    """Settings for a controller on ``double``: fast timers, the test bots registered."""
    esl = {"host": "127.0.0.1", "port": double.port, "password": double.password}
    esl.update(reply_timeout=2.0, reconnect_min=0.05, reconnect_max=0.2)
    esl.update(sections.pop("esl", {}))
    call = {"bots": TEST_BOTS, "final_bye_timeout": 2.0, "drain_timeout": 2.0}
    call.update(sections.pop("call", {}))
    routing = {"bot_header": "X-Bot-Id", "default_bot": "TwoUpdates"}
    routing.update(sections.pop("routing", {}))
    return Settings(esl=esl, call=call, routing=routing, **sections)


@pytest.fixture
def settings_for(double: EslDouble) -> Callable[..., Settings]:
    """``make_settings`` bound to this test's double."""
    return lambda **sections: make_settings(double, **sections)


@pytest.fixture
async def controller_on(
    double: EslDouble,
) -> AsyncIterator[Callable[..., Awaitable[Controller]]]:
    """Start a controller on the double (settings overrides as keyword sections)."""
    started: list[Controller] = []

    async def start(**sections: Any) -> Controller:
        controller = Controller(make_settings(double, **sections))
        await controller.start()
        started.append(controller)
        await double.wait_for(lambda: controller.ready)
        return controller

    yield start
    for controller in started:
        await controller.stop()
