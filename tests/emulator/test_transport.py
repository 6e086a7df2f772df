"""Stream framing (Content-Length, RFC 5626 keep-alives) and what bad bytes on the wire do."""

from __future__ import annotations

import asyncio

import pytest

from ivagate_kit import CallPlan, run_call
from ivagate_kit.media_node import MediaNode
from ivagate_kit.sipmsg import SipError, SipMessage
from ivagate_kit.transport import PING, PONG, StreamFramer


def _stream(recorded: list[bytes]) -> bytes:
    """The recorded messages as one TCP byte stream, with a ping and a pong between them."""
    parts = [SipMessage.parse(raw).encode() for raw in recorded]
    return parts[0] + PING + parts[1] + PONG + b"".join(parts[2:])


@pytest.mark.parametrize("chunk", [1, 7, 100, 100_000])
def test_framer_cuts_messages_and_keepalives_however_split(
    recorded_messages: list[bytes], chunk: int
) -> None:
    """The same messages and keep-alives come out whatever the TCP segment sizes."""
    data = _stream(recorded_messages)
    framer = StreamFramer()
    out: list[SipMessage | bytes] = []
    for i in range(0, len(data), chunk):
        out += framer.feed(data[i : i + chunk])
    kinds = [x.summary() if isinstance(x, SipMessage) else x for x in out]
    assert kinds[1] == PING and kinds[3] == PONG
    assert len(kinds) == 7 and framer.buffer == b""
    info = out[5]
    assert isinstance(info, SipMessage) and info.body.endswith('"final": true}')


def test_framer_refuses_a_bad_content_length() -> None:
    """A stream whose Content-Length is not a number cannot be framed: SipError."""
    with pytest.raises(SipError, match="Content-Length"):
        StreamFramer().feed(b"INFO sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n")


async def test_node_drops_an_unframeable_connection_and_keeps_serving() -> None:
    """Garbage on a TCP connection closes it and is recorded; the next call still works."""
    async with MediaNode(transport="tcp") as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the node
        writer.close()
        assert node.agent.errors and "bad request line" in node.agent.errors[0]
        report = await run_call(
            CallPlan(f"127.0.0.1:{node.port}", "tcp", bye=0.0, ping_interval=0, timeout=5)
        )
        assert report.ok, report.render()


async def send_datagram(port: int, data: bytes) -> None:
    """One UDP datagram to 127.0.0.1:``port`` from a throw-away socket."""
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    transport.sendto(data)
    transport.close()


async def test_node_ignores_a_garbage_datagram() -> None:
    """A UDP datagram that is not SIP is recorded as an error; the next call still works."""
    async with MediaNode(transport="udp") as node:
        await send_datagram(node.port, b"\x16\x03\x01 not sip at all\r\n\r\n")
        # Datagrams are read in order: once the call is answered, the garbage was handled.
        report = await run_call(CallPlan(f"127.0.0.1:{node.port}", bye=0.0, timeout=5))
        assert report.ok, report.render()
        assert len(node.agent.errors) == 1 and node.requests[0].method == "INVITE"


async def test_node_drops_a_request_missing_its_headers() -> None:
    """A request without Via/From/To is recorded as an error; the node keeps serving."""
    async with MediaNode(transport="udp") as node:
        await send_datagram(
            node.port, b"OPTIONS sip:node@127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n"
        )
        report = await run_call(CallPlan(f"127.0.0.1:{node.port}", bye=0.0, timeout=5))
        assert report.ok, report.render()
        assert node.agent.errors == ["OPTIONS sip:node@127.0.0.1: no Via header"]
