"""The controller's end of a stream leg's SIP: a user agent server on loopback that answers
FreeSWITCH's INVITE (profile ivagate-media) with an L16 answer, acknowledges its BYE, and
nothing more (the leg's end reaches the stream from the event socket, endpoint.py).

Hand-written on purpose and kept this small: its only peer is the FreeSWITCH beside it, over
loopback UDP, in one dialog shape (INVITE, ACK, BYE). No SIP library on PyPI is both kept and
lighter than these lines; the conformance kit's SIP stack belongs to the kit, not to the
product.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

__all__ = ["LegOffer", "SipAnswerer"]

log = logging.getLogger(__name__)

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
}
_ECHOED = ("via", "from", "call-id", "cseq")  # copied into a response, in this order


@dataclass
class LegOffer:
    """What the answer needs of FreeSWITCH's offer."""

    host: str = ""
    port: int = 0
    encodings: dict[int, str] = field(default_factory=dict)  # payload type -> "L16/16000"

    @classmethod
    def parse(cls, sdp: str) -> LegOffer:
        offer = cls()
        for line in sdp.splitlines():
            kind, _, value = line.strip().partition("=")
            if kind == "c":
                offer.host = value.split()[-1]
            elif kind == "m" and value.startswith("audio "):
                offer.port = int(value.split()[1])
            elif kind == "a" and value.startswith("rtpmap:"):
                number, _, encoding = value.removeprefix("rtpmap:").partition(" ")
                if number.isdigit():
                    offer.encodings[int(number)] = encoding
        return offer

    def payload_type(self, encoding: str) -> int | None:
        """The number offered for ``encoding`` ("L16/16000"), any case."""
        wanted = encoding.lower()
        return next((n for n, e in self.encodings.items() if e.lower() == wanted), None)


# (stream id, offer) -> (RTP port, payload type) answered, or None to refuse (488)
Answer = Callable[[str, LegOffer], "tuple[int, int] | None"]


class SipAnswerer(asyncio.DatagramProtocol):
    """Answers stream legs: ``on_invite(stream_id, offer)`` gives (RTP port, payload type)
    or ``None``. The stream id is the INVITE's Request-URI user, chosen by the controller in
    the dial string."""

    def __init__(self, host: str, on_invite: Answer) -> None:
        self.host = host
        self.on_invite = on_invite
        self.transport: asyncio.DatagramTransport | None = None
        self._answers: dict[str, bytes] = {}  # Call-ID -> our 2xx, resent on a retransmission

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            method, uri, headers, body = _parse(data)
        except ValueError as exc:
            log.warning("stream leg: unreadable SIP from %s: %s", addr, exc)
            return
        if not method:  # a response: we send no requests
            return
        stream_id = uri.removeprefix("sip:").partition("@")[0]
        call_id = headers.get("call-id", [""])[0]
        if method == "INVITE":
            self._send(self._invite(stream_id, call_id, headers, body), addr)
        elif method == "BYE":
            self._answers.pop(call_id, None)
            self._send(_response(200, "OK", headers), addr)
        elif method == "INFO":  # DTMF for a leg without telephone-event: the bot has its own
            self._send(_response(200, "OK", headers), addr)
        elif method != "ACK":
            self._send(_response(405, "Method Not Allowed", headers), addr)

    def _invite(
        self, stream_id: str, call_id: str, headers: dict[str, list[str]], body: str
    ) -> bytes:
        if call_id in self._answers:
            return self._answers[call_id]
        offer = LegOffer.parse(body)
        answered = self.on_invite(stream_id, offer)
        if answered is None:
            return _response(488, "Not Acceptable Here", headers)
        port, payload_type = answered
        lines = [
            "v=0",
            f"o=ivagate {port} {port} IN IP4 {self.host}",
            "s=ivagate",
            f"c=IN IP4 {self.host}",
            "t=0 0",
            f"m=audio {port} RTP/AVP {payload_type}",
            f"a=rtpmap:{payload_type} {offer.encodings[payload_type]}",
            "a=ptime:20",
            "a=sendrecv",
        ]
        sdp = "\r\n".join(lines) + "\r\n"
        contact = f"Contact: <sip:{stream_id}@{self.host}:{self.port}>"
        answer = _response(200, "OK", headers, [contact, "Content-Type: application/sdp"], sdp)
        self._answers[call_id] = answer
        return answer

    def _send(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)


def _parse(data: bytes) -> tuple[str, str, dict[str, list[str]], str]:
    """(method or "" for a response, Request-URI, headers by lower-case long name, body)."""
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    start, *lines = head.split("\r\n")
    parts = start.split(" ", 2)
    if len(parts) != 3 or "SIP/2.0" not in (parts[0], parts[2]):
        raise ValueError(f"bad start line {start!r}")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"bad header line {line!r}")
        name = name.strip().lower()
        headers.setdefault(_COMPACT.get(name, name), []).append(value.strip())
    if parts[0] == "SIP/2.0":
        return "", "", headers, body
    return parts[0], parts[1], headers, body


def _response(
    status: int,
    reason: str,
    request: dict[str, list[str]],
    extra: list[str] | None = None,
    body: str = "",
) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in _ECHOED:
        lines += [f"{name}: {value}" for value in request.get(name, [])]
    to = request.get("to", [""])[0]
    lines.append(f"to: {to}" if ";tag=" in to else f"to: {to};tag={secrets.token_hex(6)}")
    lines += extra or []
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
