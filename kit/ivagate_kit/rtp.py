"""The call's one RTP session, as a phone runs it: one UDP socket (its port goes into the
offer); PCMU frames every 20 ms from answer to hangup; RFC 4733 key presses in the same stream
(same SSRC and sequence, audio muted while a key is down); everything that arrives counted,
PCMU decoded and kept with its arrival time. SRTP (SDES keys, AES_CM_128_HMAC_SHA1_80) is
libsrtp's, through pylibsrtp.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import pylibsrtp

from ivagate_kit.audio import FRAME_SAMPLES, RATE, active_spans, tone_power, ulaw_decode
from ivagate_kit.dtmf import GAP_MS, event_packets
from ivagate_kit.report import Frame, MediaReport
from ivagate_kit.transport import Address

__all__ = ["PCMU", "RtpSession"]

PCMU = 0  # static payload type (RFC 3551)
FRAME_SECONDS = FRAME_SAMPLES / RATE
_HEADER = struct.Struct("!BBHII")


class _Key(NamedTuple):
    digit: str
    payload_type: int
    sent: asyncio.Future[None]


class RtpSession(asyncio.DatagramProtocol):
    """``bind``, put ``port`` in the offer; ``open`` with the answer's address (and the SDES
    keys, for SRTP); ``play`` once answered; ``press`` keys; ``close`` at hangup. An
    ``echo`` session (the stand-in media node's) sends back each packet it takes, under its
    own SRTP key."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: Address | None = None
        self.seq = secrets.randbelow(1 << 16)
        self.timestamp = secrets.randbelow(1 << 32)
        self.ssrc = secrets.randbelow(1 << 32)
        self.frames: list[Frame] = []
        self.sent = 0
        self.first_sent_at: float | None = None  # wall clock
        self.received = 0
        self.lost = 0  # sequence numbers skipped, less those that came late
        self.out_of_order = 0  # packets older than one already received (late or repeated)
        self.srtp_failures = 0  # packets that failed SRTP authentication (or replay check)
        self._keys: tuple[bytes | None, bytes | None] = (None, None)
        self._protect: pylibsrtp.Session | None = None
        self._unprotect: pylibsrtp.Session | None = None
        self._source: int | None = None  # SSRC of the far end's stream
        self._highest = 0  # its highest sequence number so far
        self._pacer: asyncio.Task[None] | None = None
        self._presses: deque[_Key] = deque()
        self._event: deque[bytes] = deque()  # the rest of the key press being sent

    @classmethod
    async def bind(cls, host: str, echo: bool = False) -> RtpSession:
        loop = asyncio.get_running_loop()
        transport, session = await loop.create_datagram_endpoint(
            lambda: cls(echo), local_addr=(host, 0)
        )
        session.transport = transport
        return session

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    @property
    def srtp(self) -> bool:
        return self._protect is not None

    def open(self, remote: Address, send_key: bytes | None, receive_key: bytes | None) -> None:
        """Send to ``remote``, and take what arrives; SRTP with both keys (ours from the
        offer, theirs from the answer), plain RTP with neither. Again after a re-INVITE: new
        keys start new SRTP contexts, unchanged ones keep theirs."""
        if (send_key is None) != (receive_key is None):
            raise ValueError("SRTP needs both keys, plain RTP neither")
        self.remote = remote
        if (send_key, receive_key) == self._keys:
            return
        self._keys = (send_key, receive_key)
        self._protect = self._unprotect = None
        if send_key is not None and receive_key is not None:
            outbound = pylibsrtp.Policy(send_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            outbound.allow_repeat_tx = True  # an echo resends what arrives, repeats included
            inbound = pylibsrtp.Policy(receive_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
            self._protect, self._unprotect = pylibsrtp.Session(outbound), pylibsrtp.Session(inbound)

    @property
    def playing(self) -> bool:
        return self._pacer is not None

    def play(self, frames: Iterator[bytes]) -> None:
        """Send ``frames`` (PCMU payloads of 20 ms) to the open remote until ``close``."""
        if self.remote is None or self._pacer is not None:
            raise RuntimeError("play once, after open")
        self._pacer = asyncio.get_running_loop().create_task(self._pace(frames))

    async def press(self, digits: str, payload_type: int) -> None:
        """Send ``digits`` as telephone-events in place of audio (100 ms a key, audio again in
        the 100 ms between keys); returns once the last is sent. Only while playing."""
        if not self.playing:
            raise RuntimeError("keys are sent in the audio stream: play first")
        loop = asyncio.get_running_loop()
        for digit in digits:
            key = _Key(digit, payload_type, loop.create_future())
            self._presses.append(key)
            await key.sent
            await asyncio.sleep(GAP_MS / 1000)

    async def _pace(self, frames: Iterator[bytes]) -> None:
        """One packet per 20 ms, each due at an absolute time from the start (monotonic), so
        late wake-ups do not add up to drift; a packet due in the past goes at once."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        marker = 0x80  # the first packet starts a talkspurt
        for n, payload in enumerate(frames, 1):
            if not self._event and self._presses:
                key = self._presses[0]
                self._event.extend(
                    event_packets(key.digit, key.payload_type, self.seq, self.timestamp, self.ssrc)
                )
            if self._event:  # the audio of this frame is muted: the key's packet goes instead
                self._send(self._event.popleft())
                if not self._event:
                    self._presses.popleft().sent.set_result(None)
            else:
                header = _HEADER.pack(0x80, marker | PCMU, self.seq, self.timestamp, self.ssrc)
                self._send(header + payload)
                marker = 0
            self.seq = (self.seq + 1) & 0xFFFF
            self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
            await asyncio.sleep(start + n * FRAME_SECONDS - loop.time())

    def _send(self, packet: bytes) -> None:
        assert self.transport is not None and self.remote is not None
        if self._protect is not None:
            packet = self._protect.protect(packet)
        self.transport.sendto(packet, self.remote)
        if not self.sent:
            self.first_sent_at = time.time()
        self.sent += 1

    def datagram_received(self, data: bytes, addr: Address) -> None:
        at = time.time()
        if self.remote is None or len(data) < _HEADER.size or data[0] >> 6 != 2:
            return  # before the answer, or not RTP
        if 192 <= data[1] <= 223:
            return  # RTCP on the RTP port (RFC 5761): not counted
        if self._unprotect is not None:
            try:
                data = self._unprotect.unprotect(data)
            except pylibsrtp.Error:
                self.srtp_failures += 1
                return
        _flags, second, seq, _timestamp, ssrc = _HEADER.unpack_from(data)
        self._count(seq, ssrc)
        if self.echo:
            self._send(data)
        if second & 0x7F == PCMU:
            self.frames.append(Frame(at, seq, ulaw_decode(_payload(data))))

    def _count(self, seq: int, ssrc: int) -> None:
        self.received += 1
        if ssrc != self._source:  # a (new) stream: its sequence starts here
            self._source, self._highest = ssrc, seq
            return
        ahead = (seq - self._highest) & 0xFFFF
        if 0 < ahead < 0x8000:
            self.lost += ahead - 1
            self._highest = seq
        else:
            self.out_of_order += 1
            self.lost = max(0, self.lost - 1)

    def report(self, tones: list[int]) -> MediaReport:
        """What was sent and heard; the power of each of ``tones`` in all that was heard."""
        spans = active_spans((f.at, f.pcm) for f in self.frames)
        media = MediaReport(
            packets_sent=self.sent,
            first_sent_at=self.first_sent_at,
            packets_received=self.received,
            packets_lost=self.lost,
            out_of_order=self.out_of_order,
            srtp=self.srtp,
            srtp_failures=self.srtp_failures,
            heard_seconds=round(sum(end - start for start, end in spans), 3),
            active_spans=spans,
            frames=self.frames,
        )
        heard = media.samples()
        media.tone_power = {hz: round(tone_power(heard, RATE, hz), 3) for hz in tones}
        return media

    def close(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
        for key in self._presses:
            key.sent.cancel()
        if self.transport is not None:
            self.transport.close()


def _payload(packet: bytes) -> bytes:
    """The payload of an RTP packet: after the CSRCs and header extension, before padding."""
    start = _HEADER.size + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= start + 4:
        start += 4 + 4 * struct.unpack_from("!H", packet, start + 2)[0]
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    return packet[start:end]
