"""The RTP side of a stream leg: one UDP socket on loopback per stream, L16 both ways.

FreeSWITCH keeps SRTP, codecs and its jitter handling on the caller's leg and sends this
leg 16-bit linear PCM (RFC 3551 4.5.11: network byte order, so a byte swap on this machine),
so no codec work happens in Python. Packets of other payload types (telephone-event: the
bridge copies the caller's DTMF here too; the bot gets DTMF from the call's events) are
ignored.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import sys
import time
from array import array
from typing import cast

from .stream import FRAME_SECONDS, AudioStream

__all__ = ["RtpLeg"]

_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_SWAP = sys.byteorder == "little"  # L16 is big-endian on the wire (RFC 3551 4.5.11)


def _swap(pcm: bytes) -> bytes:
    """16-bit samples between network and machine byte order (an involution)."""
    samples = array("h", pcm)
    samples.byteswap()
    return samples.tobytes()


class RtpLeg(asyncio.DatagramProtocol):
    """Receives the caller's frames for ``stream`` and sends the bot's to FreeSWITCH."""

    def __init__(self, stream: AudioStream) -> None:
        self.stream = stream
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None  # FreeSWITCH's RTP socket (its SDP)
        self.payload_type = -1  # L16 at the stream's rate, as FreeSWITCH numbered it
        self._first_timestamp: int | None = None
        self._next_seq: int | None = None  # FreeSWITCH's next sequence number
        self._samples = round(stream.rate * FRAME_SECONDS)
        self._seq = secrets.randbelow(1 << 16)
        self._ssrc = secrets.randbelow(1 << 32)
        self._base = secrets.randbelow(1 << 32)
        self._talking = False  # the last tick sent audio: the next talkspurt gets a marker
        self._swap = _SWAP and stream.encoding.sample_bytes == 2

    @classmethod
    async def bind(cls, host: str, stream: AudioStream) -> RtpLeg:
        loop = asyncio.get_running_loop()
        _, leg = await loop.create_datagram_endpoint(lambda: cls(stream), local_addr=(host, 0))
        return leg

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) <= _HEADER.size:
            return
        first, marker_type, seq, timestamp, _ = _HEADER.unpack_from(data)
        if first >> 6 != 2:
            return
        if self._next_seq is not None:  # telephone-events share the sequence: count them too
            gap = (seq - self._next_seq) & 0xFFFF
            if gap < 0x8000:  # ahead: the packets between were lost (behind: late, kept)
                self.stream.frames_lost += gap
        self._next_seq = (seq + 1) & 0xFFFF
        if marker_type & 0x7F != self.payload_type:
            return
        start = _HEADER.size + 4 * (first & 0x0F)  # past any CSRCs (FreeSWITCH sends none)
        if self._first_timestamp is None:
            self._first_timestamp = timestamp
        media_time = ((timestamp - self._first_timestamp) & 0xFFFFFFFF) / self.stream.rate
        payload = data[start:]
        self.stream.received(
            _swap(payload) if self._swap else payload, media_time, time.monotonic()
        )

    def tick(self, index: int) -> None:
        """Pacer tick ``index`` (20 ms each since the pacer started): send the bot's next
        frame, if any. The RTP timestamp follows the tick, so a pause in the bot's audio
        is a pause in media time too."""
        frame = self.stream.next_frame()
        if frame is None or self.transport is None or self.remote is None:
            self._talking = False
            return
        marker = 0 if self._talking else 0x80
        self._talking = True
        timestamp = (self._base + index * self._samples) & 0xFFFFFFFF
        header = _HEADER.pack(0x80, marker | self.payload_type, self._seq, timestamp, self._ssrc)
        self._seq = (self._seq + 1) & 0xFFFF
        self.transport.sendto(header + (_swap(frame) if self._swap else frame), self.remote)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
