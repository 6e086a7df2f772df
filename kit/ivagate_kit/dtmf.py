"""DTMF the ways a caller sends it: SIP INFO (``application/dtmf-relay``) or RFC 4733
telephone-events in RTP (RFC 2833's successor, same packets), which the call's RTP session
(``rtp.RtpSession.press``) sends in its audio stream.
"""

from __future__ import annotations

import struct
from typing import Literal

__all__ = ["DIGITS", "DtmfMode", "event_packets", "info_body"]

DtmfMode = Literal["info", "rfc2833"]
DIGITS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15, in order
PRESS_MS = 100  # how long each key is held
PACKET_MS = 20  # one event packet per audio frame interval
GAP_MS = 100  # between two key presses
END_REPEATS = 3  # RFC 4733 2.5.1.4: the final (end) packet is sent three times
VOLUME = 10  # -10 dBm0, a typical keypad level
RATE = 8000  # telephone-event/8000


def info_body(digit: str) -> str:
    """The ``application/dtmf-relay`` body of one key press."""
    return f"Signal={digit}\r\nDuration={PRESS_MS}\r\n"


def event_packets(
    digit: str, payload_type: int, seq: int, timestamp: int, ssrc: int
) -> list[bytes]:
    """The RTP packets of one key press: growing duration, marker on the first, the end
    packet repeated; one timestamp (the press's start) for all of them."""
    event = DIGITS.index(digit)
    step = RATE * PACKET_MS // 1000
    count = PRESS_MS // PACKET_MS
    packets = []
    for n in range(count + END_REPEATS - 1):
        end = n >= count - 1
        duration = step * min(n + 1, count)
        header = struct.pack(
            "!BBHII",
            0x80,  # version 2, no padding, extension or CSRC
            (0x80 if n == 0 else 0) | payload_type,
            (seq + n) & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        packets.append(header + struct.pack("!BBH", event, (0x80 if end else 0) | VOLUME, duration))
    return packets
