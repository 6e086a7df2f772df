"""The stream leg's SIP, replayed from what a real FreeSWITCH 1.10.12 sent (fixtures)."""

from __future__ import annotations

import asyncio
import re

import pytest

from ivagate.media.sip import LegOffer, SipAnswerer
from support.recordings import RECORDINGS

RECORDING = RECORDINGS / "sip" / "stream-leg-as-seen-by-controller.sip"


def _frames(direction: str) -> list[bytes]:
    """The messages of one direction of the recording (``<<<`` FreeSWITCH's, ``>>>`` ours)."""
    data, frames, at = RECORDING.read_bytes(), [], 0
    while at < len(data):
        end = data.index(b"\n", at)
        mark, length, _ = data[at:end].decode().split()
        body = data[end + 1 : end + 1 + int(length)]
        if mark == direction:
            frames.append(body)
        at = end + 1 + int(length) + 1
    return frames


INVITE, ACK, BYE = _frames("<<<")


class _Peer:
    """The answerer on a real loopback socket, and what it sent back."""

    def __init__(self, answer: tuple[int, int] | None) -> None:
        self.offers: list[tuple[str, LegOffer]] = []
        self.answer = answer
        self.sent: list[bytes] = []

    def on_invite(self, stream_id: str, offer: LegOffer) -> tuple[int, int] | None:
        self.offers.append((stream_id, offer))
        return self.answer

    async def exchange(self, *messages: bytes) -> list[bytes]:
        loop = asyncio.get_running_loop()
        _, server = await loop.create_datagram_endpoint(
            lambda: SipAnswerer("127.0.0.1", self.on_invite),
            local_addr=("127.0.0.1", 0),
        )
        received: asyncio.Queue[bytes] = asyncio.Queue()
        client, _ = await loop.create_datagram_endpoint(
            lambda: _Collector(received), remote_addr=("127.0.0.1", server.port)
        )
        replies = []
        try:
            for message in messages:
                client.sendto(message)
                await asyncio.sleep(0.05)
            while not received.empty():
                replies.append(received.get_nowait())
        finally:
            client.close()
            assert server.transport is not None
            server.transport.close()
        return replies


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.queue.put_nowait(data)


def _header(message: bytes, name: str) -> str:
    found = re.search(rf"^{name}: (.*)$", message.decode(), re.M | re.I)
    assert found, (name, message)
    return found.group(1).strip()


def test_freeswitchs_offer_is_read() -> None:
    offer = LegOffer.parse(INVITE.decode().partition("\r\n\r\n")[2])
    assert (offer.host, offer.port) == ("127.0.0.1", 64620)
    assert offer.payload_type("l16/16000") == 102
    assert offer.payload_type("L16/8000") is None


async def test_the_leg_is_answered_with_l16_on_the_streams_socket_and_its_bye_with_200() -> None:
    peer = _Peer(answer=(40000, 102))
    ok, again, bye_ok = await peer.exchange(INVITE, INVITE, ACK, BYE)
    assert ok.startswith(b"SIP/2.0 200 OK") and again == ok  # a retransmission: the same 2xx
    assert [stream for stream, _ in peer.offers] == ["fedce27b0476e7a6"]
    sdp = ok.decode().partition("\r\n\r\n")[2]
    assert "m=audio 40000 RTP/AVP 102\r\n" in sdp and "a=rtpmap:102 L16/16000\r\n" in sdp
    for name in ("Via", "From", "Call-ID", "CSeq"):
        assert _header(ok, name) == _header(INVITE, name)
    assert ";tag=" in _header(ok, "To")
    assert bye_ok.startswith(b"SIP/2.0 200 OK") and _header(bye_ok, "CSeq") == "123653147 BYE"


async def test_an_offer_the_stream_cannot_take_gets_488() -> None:
    (refused,) = await _Peer(answer=None).exchange(INVITE)
    assert refused.startswith(b"SIP/2.0 488 ")


@pytest.mark.parametrize(
    "garbage", [b"\r\n\r\n", b"NOT SIP AT ALL", b"INVITE x SIP/2.0\r\nno colon\r\n\r\n"]
)
async def test_unreadable_datagrams_are_dropped_and_the_socket_goes_on(garbage: bytes) -> None:
    peer = _Peer(answer=(40000, 102))
    replies = await peer.exchange(garbage, INVITE)
    assert len(replies) == 1 and replies[0].startswith(b"SIP/2.0 200 OK")
