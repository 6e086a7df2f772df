"""The event socket of a live FreeSWITCH as the tests use it: a connected client, parked calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from ivagate.esl import EslClient
from ivagate.events import EslEvent
from ivagate.settings import EslSettings
from support.fs_node import LiveNode

__all__ = ["esl_session", "gate_commands", "parked", "set_gate"]


class _Listener:
    """The event-socket listener a test needs: to know when the connection is up."""

    def __init__(self) -> None:
        self.up = asyncio.Event()

    def esl_connected(self) -> None:
        self.up.set()

    def esl_disconnected(self) -> None:
        self.up.clear()

    def esl_event(self, event: EslEvent) -> None:
        pass


@asynccontextmanager
async def esl_session(node: LiveNode) -> AsyncIterator[EslClient]:
    """The controller's own ESL client, connected to ``node``."""
    settings = EslSettings(
        host="127.0.0.1", port=node.esl_port, password=SecretStr(node.esl_password)
    )
    client = EslClient(settings)
    listener = _Listener()
    await client.start(listener)
    try:
        await asyncio.wait_for(listener.up.wait(), 30)
        yield client
    finally:
        await client.close()


def gate_commands(ready: str = "true", lease: float = 60.0) -> list[str]:
    """What the controller sets (controller.py): ivagate_ready, and the lease ``lease``
    seconds from now, in microseconds since the epoch."""
    until = round((time.time() + lease) * 1_000_000)
    return [f"global_setvar ivagate_ready_until={until}", f"global_setvar ivagate_ready={ready}"]


async def set_gate(esl: EslClient, ready: str = "true", lease: float = 60.0) -> None:
    for command in gate_commands(ready, lease):
        assert (await esl.api(command)).startswith("+OK")


async def parked(esl: EslClient, did: str) -> dict[str, Any]:
    """The channel of the call to ``did`` once the dialplan has parked it."""
    for _ in range(100):
        rows = json.loads(await esl.api("show channels as json")).get("rows") or []
        for row in rows:
            if row.get("dest") == did and row.get("application") == "park":
                assert row["context"] == "ivagate"
                return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no parked channel for {did}")
