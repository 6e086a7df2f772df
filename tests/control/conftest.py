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
from support.controller import controller_settings, running_controllers
from support.recordings import ESL_RECORDINGS


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
    return controller_settings(double.port, double.password, **sections)


@pytest.fixture
def settings_for(double: EslDouble) -> Callable[..., Settings]:
    """``make_settings`` bound to this test's double."""
    return lambda **sections: make_settings(double, **sections)


@pytest.fixture
async def controller_on(
    double: EslDouble,
) -> AsyncIterator[Callable[..., Awaitable[Controller]]]:
    """Start a controller on the double (settings overrides as keyword sections), returned
    once it has opened the ready gate."""
    async with running_controllers(double.port, double.password) as start:
        yield start
