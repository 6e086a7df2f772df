"""``RtpLeg``: L16 in network byte order on the wire, machine order toward the bot."""

from __future__ import annotations

import asyncio
import struct

from ivagate.media import AudioStream, StreamClosed
from ivagate.media.rtp import RtpLeg


async def _leg() -> tuple[RtpLeg, AudioStream]:
    async def closer() -> None:
        stream.end(StreamClosed("closed"))

    stream = AudioStream(
        8000, inbound_frames=5, max_buffered_seconds=1, on_error=lambda e: None, closer=closer
    )
    leg = await RtpLeg.bind("127.0.0.1", stream)
    leg.payload_type = 102
    return leg, stream


class _Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.packets.put_nowait(data)


async def test_caller_audio_is_swapped_to_machine_order_and_timed_by_the_rtp_clock() -> None:
    leg, stream = await _leg()
    loop = asyncio.get_running_loop()
    peer, _ = await loop.create_datagram_endpoint(_Peer, remote_addr=("127.0.0.1", leg.port))
    samples = struct.pack("!160h", *range(160))
    # 101: telephone-event, not audio but in the same sequence; 10 never comes
    for seq, payload_type in ((7, 102), (8, 101), (9, 102), (11, 102)):
        header = struct.pack("!BBHII", 0x80, payload_type, seq, 1000 + 160 * (seq - 7), 42)
        peer.sendto(header + samples)
    first, second, third = [await anext(stream) for _ in range(3)]
    assert first.pcm == struct.pack("<160h", *range(160))
    assert (first.timestamp, second.timestamp, third.timestamp) == (0.0, 0.04, 0.08)
    assert (stream.frames_in, stream.frames_lost) == (3, 1)
    peer.close()
    leg.close()


async def test_bot_audio_leaves_in_network_order_with_a_marker_per_talkspurt() -> None:
    leg, stream = await _leg()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(_Peer, local_addr=("127.0.0.1", 0))
    leg.remote = transport.get_extra_info("sockname")
    stream.play(struct.pack("<160h", *range(160)) * 2)
    for tick in (1, 2, 3, 4):
        if tick == 4:
            stream.play(b"\0\0" * 160)
        leg.tick(tick)
    packets = [await peer.packets.get() for _ in range(3)]
    headers = [struct.unpack("!BBHII", p[:12]) for p in packets]
    assert [h[1] for h in headers] == [0x80 | 102, 102, 0x80 | 102]  # tick 3 sent nothing
    assert [h[3] - headers[0][3] for h in headers] == [0, 160, 480]  # media time follows ticks
    assert [h[2] - headers[0][2] for h in headers] == [0, 1, 2]
    assert packets[0][12:] == struct.pack("!160h", *range(160))
    transport.close()
    leg.close()
