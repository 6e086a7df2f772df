"""SIP over UDP, TCP and TLS on asyncio: datagrams, stream framing, RFC 5626 keep-alives.

A ``Link`` is where a message came from and where its answer goes: a UDP peer, or one TCP/TLS
connection. On streams messages are framed by Content-Length (RFC 3261 18.3); a double CRLF
between messages is an RFC 5626 "ping" (the accepting side answers one CRLF, the "pong").
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from ivagate_kit.sipmsg import SipError, SipMessage

__all__ = [
    "PING",
    "PONG",
    "Address",
    "Link",
    "Listener",
    "Sink",
    "StreamFramer",
    "TransportName",
    "close_link",
    "connect",
    "listen",
]

TransportName = Literal["udp", "tcp", "tls"]
Address = tuple[str, int]
PING = b"\r\n\r\n"
PONG = b"\r\n"
MAX_MESSAGE = 65535  # larger header sections mean a lost framing, not a message


class Sink(Protocol):
    """What a transport reports to (the SIP agent using it)."""

    def message(self, msg: SipMessage, link: Link) -> None: ...

    def keepalive(self, data: bytes, link: Link) -> None: ...

    def bad_data(self, error: str, link: Link) -> None: ...

    def connected(self, link: Link) -> None: ...

    def closed(self, link: Link) -> None: ...


class Link(ABC):
    """One way to reach a peer: send bytes, know both addresses."""

    transport: TransportName
    peer: Address
    local: Address

    @abstractmethod
    def send_bytes(self, data: bytes) -> None: ...

    @property
    @abstractmethod
    def closed(self) -> bool: ...

    def send(self, msg: SipMessage) -> None:
        self.send_bytes(msg.encode())

    def __repr__(self) -> str:
        return f"<{self.transport} {self.local[0]}:{self.local[1]}->{self.peer[0]}:{self.peer[1]}>"


@dataclass
class StreamFramer:
    """Cut a byte stream into SIP messages and keep-alives (``PING``/``PONG`` bytes)."""

    buffer: bytes = b""

    def feed(self, data: bytes) -> list[SipMessage | bytes]:
        """Return what is complete; raise SipError when the stream cannot be framed."""
        self.buffer += data
        out: list[SipMessage | bytes] = []
        while self.buffer:
            if self.buffer.startswith(PING):
                out.append(PING)
                self.buffer = self.buffer[4:]
                continue
            if self.buffer.startswith(PONG):
                if self.buffer in (b"\r\n", b"\r\n\r"):
                    # Could be the start of a split ping: a lone pong is counted on the next data.
                    break
                out.append(PONG)
                self.buffer = self.buffer[2:]
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_MESSAGE:
                    raise SipError("no end of headers within 64 KiB")
                break
            head = SipMessage.parse(self.buffer[: end + 4])
            length = head.headers.get("Content-Length", "0")
            if not length.isdigit():
                raise SipError(f"bad Content-Length on a stream: {length!r}")
            total = end + 4 + int(length)
            if len(self.buffer) < total:
                break
            out.append(SipMessage.parse(self.buffer[:total]))
            self.buffer = self.buffer[total:]
        return out


class _UdpLink(Link):
    def __init__(self, sock: _UdpSocket, peer: Address) -> None:
        self.transport = "udp"
        self.peer = peer
        self.local = sock.local
        self._sock = sock

    def send_bytes(self, data: bytes) -> None:
        self._sock.sendto(data, self.peer)

    @property
    def closed(self) -> bool:
        return self._sock.closed


class _UdpSocket(asyncio.DatagramProtocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.local: Address = ("", 0)
        self._tr: asyncio.DatagramTransport | None = None
        # asyncio closes the socket itself on a later loop turn: this says when it did
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Typed loosely by asyncio; the selector loop's UDP transport has sendto().
        self._tr = cast(asyncio.DatagramTransport, transport)
        self.local = transport.get_extra_info("sockname")[:2]

    @property
    def closed(self) -> bool:
        return self.lost.done()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def sendto(self, data: bytes, peer: Address) -> None:
        if self._tr is not None and not self.closed:
            self._tr.sendto(data, peer)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        link = _UdpLink(self, (str(addr[0]), int(addr[1])))
        if not data.strip(b"\r\n\x00"):
            self.sink.keepalive(data, link)
            return
        try:
            msg = SipMessage.parse(data)
        except SipError as e:
            self.sink.bad_data(str(e), link)
            return
        self.sink.message(msg, link)

    def close(self) -> None:
        if self._tr is not None:
            self._tr.close()


class _StreamLink(Link, asyncio.Protocol):
    def __init__(self, transport: TransportName, sink: Sink, accepted: bool) -> None:
        self.transport = transport
        self.sink = sink
        self.accepted = accepted
        self.peer = ("", 0)
        self.local = ("", 0)
        self._framer = StreamFramer()
        self._tr: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._tr = transport
        self.peer = transport.get_extra_info("peername")[:2]
        self.local = transport.get_extra_info("sockname")[:2]
        self.sink.connected(self)

    def data_received(self, data: bytes) -> None:
        try:
            items = self._framer.feed(data)
        except SipError as e:
            # Framing is lost for good on a stream: report and drop the connection.
            self.sink.bad_data(str(e), self)
            self.close()
            return
        for item in items:
            if isinstance(item, SipMessage):
                self.sink.message(item, self)
                continue
            if item == PING and self.accepted:
                self.send_bytes(PONG)
            self.sink.keepalive(item, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.sink.closed(self)

    def send_bytes(self, data: bytes) -> None:
        if self._tr is not None and not self.closed:
            self._tr.write(data)

    @property
    def closed(self) -> bool:
        return self.lost.done()

    def close(self) -> None:
        if self._tr is not None:
            self._tr.close()


class Listener:
    """A bound UDP socket or a listening TCP/TLS server, and the links it has."""

    def __init__(
        self,
        transport: TransportName,
        local: Address,
        udp: _UdpSocket | None = None,
        server: asyncio.Server | None = None,
    ) -> None:
        self.transport = transport
        self.local = local
        self.links: list[_StreamLink] = []
        self._udp = udp
        self._server = server

    def link_to(self, peer: Address, *, same_host: bool = False) -> Link | None:
        """A UDP link to ``peer``, or an open accepted connection from it (or its host)."""
        if self._udp is not None:
            return _UdpLink(self._udp, peer)
        for link in self.links:
            if not link.closed and (link.peer == peer or (same_host and link.peer[0] == peer[0])):
                return link
        return None

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            await self._udp.lost  # its port is free for the next listener once this returns
        if self._server is not None:
            self._server.close()
            for link in self.links:
                link.close()
            await self._server.wait_closed()


async def listen(
    transport: TransportName,
    host: str,
    port: int,
    sink: Sink,
    ssl_context: ssl.SSLContext | None = None,
) -> Listener:
    """Bind ``host:port`` (0 = any free port) for ``transport``."""
    loop = asyncio.get_running_loop()
    if transport == "udp":
        dgram, udp = await loop.create_datagram_endpoint(lambda: _UdpSocket(sink), (host, port))
        # connection_made runs on the next loop pass: read the bound address now.
        udp.local = dgram.get_extra_info("sockname")[:2]
        return Listener(transport, udp.local, udp=udp)
    if transport == "tls" and ssl_context is None:
        raise ValueError("a TLS listener needs an ssl_context")
    listener: Listener | None = None

    def accept() -> _StreamLink:
        link = _StreamLink(transport, sink, accepted=True)
        assert listener is not None
        listener.links = [x for x in listener.links if not x.closed] + [link]
        return link

    server = await loop.create_server(
        accept, host, port, ssl=ssl_context if transport == "tls" else None, reuse_address=True
    )
    local = server.sockets[0].getsockname()[:2]
    listener = Listener(transport, (str(local[0]), int(local[1])), server=server)
    return listener


async def connect(
    transport: TransportName,
    peer: Address,
    sink: Sink,
    *,
    local_host: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    within: float = 10.0,
) -> Link:
    """Open a TCP/TLS connection to ``peer`` (from ``local_host``, any port)."""
    if transport == "udp":
        raise ValueError("UDP has no connections: use listen() and Listener.link_to()")
    if transport == "tls" and ssl_context is None:
        raise ValueError("a TLS connection needs an ssl_context")
    loop = asyncio.get_running_loop()
    _, link = await asyncio.wait_for(
        loop.create_connection(
            lambda: _StreamLink(transport, sink, accepted=False),
            peer[0],
            peer[1],
            ssl=ssl_context if transport == "tls" else None,
            server_hostname=peer[0] if transport == "tls" else None,
            local_addr=(local_host, 0) if local_host else None,
            family=socket.AF_INET6 if ":" in peer[0] else socket.AF_INET,
        ),
        within,
    )
    return link


def close_link(link: Link) -> None:
    """Close a stream link (UDP links share their socket and are left open)."""
    if isinstance(link, _StreamLink):
        link.close()
