"""A real WebSocket server playing a Twilio-stream bot, for the websocket bot's tests."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = ["WITHIN", "PeerBot"]

WITHIN = 5.0  # seconds a message may take on loopback (generous: the machine is shared)


class PeerBot:
    """A real WebSocket server: the bot side of the protocol. ``received`` has every message
    it got, in order; ``send`` writes to the call's connection."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.requests: list[web.Request] = []
        self.socket: web.WebSocketResponse | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self.reading = asyncio.Event()  # cleared: the handler stops reading (a stuck bot)
        self.reading.set()
        self.accepting = asyncio.Event()  # cleared: upgrade requests wait (a slow bot)
        self.accepting.set()
        self.requested = asyncio.Event()  # an upgrade request came (accepted or waiting)
        app = web.Application()
        app.router.add_get("/bot", self._handle)
        self.server = TestServer(app)

    async def __aenter__(self) -> Self:
        await self.server.start_server(ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # a test that failed mid-call leaves the handler waiting or the call's socket open:
        # the server's close would wait out aiohttp's shutdown timeout (a minute) for it
        self.accepting.set()
        self.reading.set()
        if self.socket is not None:
            await self.socket.close()
        await self.server.close()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        self.requests.append(request)
        self.requested.set()
        await self.accepting.wait()
        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        self.socket = ws
        self.connected.set()
        async for message in ws:
            self.messages.put_nowait(json.loads(message.data))
            await self.reading.wait()
        self.closed.set()
        return ws

    @property
    def url(self) -> str:
        return str(self.server.make_url("/bot")).replace("http", "ws", 1)

    async def next(self, *skip: str) -> dict[str, Any]:
        """The next message whose event is not in ``skip``."""
        while True:
            async with asyncio.timeout(WITHIN):
                message = await self.messages.get()
            if message["event"] not in skip:
                return message

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.connected.wait()
        assert self.socket is not None
        if isinstance(message, bytes):
            await self.socket.send_bytes(message)
        else:
            await self.socket.send_str(message if isinstance(message, str) else json.dumps(message))
