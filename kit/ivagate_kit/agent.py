"""The transaction layer both ends share (RFC 3261 section 17, the parts a test tool needs).

Client side: send a request, retransmit it on UDP (timers A/E), match responses by Via
branch and CSeq method, hand back the final one. Server side: pass new requests on, answer a
retransmitted request with the response already sent. Everything on the wire is traced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ivagate_kit.sipmsg import SipError, SipMessage
from ivagate_kit.transport import PING, Link

__all__ = ["T1", "T2", "Agent", "Trace"]

T1 = 0.5  # RFC 3261 round-trip estimate, seconds
T2 = 4.0  # longest retransmit interval for non-INVITE requests

Trace = Callable[[str, str], None]  # (direction "->"/"<-", one-line summary)
RequestHandler = Callable[[SipMessage, Link], None]
ResponseHandler = Callable[[SipMessage, Link], None]


def _key(msg: SipMessage) -> tuple[str, str]:
    return msg.top_via.branch, msg.cseq[1]


@dataclass
class _Pending:
    final: asyncio.Future[SipMessage | None]  # None: the connection closed first
    on_provisional: ResponseHandler | None
    on_final: ResponseHandler | None
    link: Link


@dataclass
class Agent:
    """One SIP endpoint's transactions; plug it into transports as their ``Sink``."""

    on_request: RequestHandler
    trace: Trace = lambda direction, text: None
    on_stray_response: ResponseHandler = lambda msg, link: None
    on_closed: Callable[[Link], None] = lambda link: None
    pings_received: int = 0
    pongs_received: int = 0
    errors: list[str] = field(default_factory=list)
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    _answered: dict[tuple[str, str], tuple[float, SipMessage]] = field(default_factory=dict)

    # --- Sink ---------------------------------------------------------------------------
    def message(self, msg: SipMessage, link: Link) -> None:
        self.trace("<-", msg.summary())
        try:
            self._dispatch(msg, link)
        except SipError as e:
            # A message missing what its handling needs (To, CSeq...) is dropped, not fatal.
            self.bad_data(f"{msg.summary()}: {e}", link)

    def _dispatch(self, msg: SipMessage, link: Link) -> None:
        key = _key(msg)
        if not msg.is_request:
            pending = self._pending.get(key)
            if pending is None or pending.final.done():
                self.on_stray_response(msg, link)
            elif msg.status < 200:
                if pending.on_provisional is not None:
                    pending.on_provisional(msg, link)
            else:
                if pending.on_final is not None:
                    pending.on_final(msg, link)
                pending.final.set_result(msg)
            return
        if msg.method != "ACK" and key in self._answered:
            self.send(self._answered[key][1], link)  # a retransmission: repeat our answer
            return
        self.on_request(msg, link)

    def keepalive(self, data: bytes, link: Link) -> None:
        if data == PING:
            self.pings_received += 1
        else:
            self.pongs_received += 1

    def bad_data(self, error: str, link: Link) -> None:
        self.errors.append(error)
        self.trace("<-", f"unparsable data from {link.peer[0]}:{link.peer[1]}: {error}")

    def connected(self, link: Link) -> None:
        return None

    def closed(self, link: Link) -> None:
        # A stream's transactions cannot complete once it is gone (RFC 3261 18.1.1 would open
        # a new connection; a caller like RingCX does not, so neither does this agent).
        for pending in self._pending.values():
            if pending.link is link and not pending.final.done():
                pending.final.set_result(None)
        self.on_closed(link)

    # --- sending ------------------------------------------------------------------------
    def send(self, msg: SipMessage, link: Link) -> None:
        self.trace("->", msg.summary())
        link.send(msg)

    def reply(self, request: SipMessage, response: SipMessage, link: Link) -> None:
        """Send a response and remember it (final ones) for retransmitted requests."""
        if response.status >= 200:
            now = time.monotonic()
            # Forget answers older than Timer J (64*T1): retransmissions stop before that.
            for key in [k for k, (at, _) in self._answered.items() if now - at > 64 * T1]:
                del self._answered[key]
            self._answered[_key(request)] = (now, response)
        self.send(response, link)

    async def request(
        self,
        msg: SipMessage,
        link: Link,
        within: float,
        on_provisional: ResponseHandler | None = None,
        on_final: ResponseHandler | None = None,
    ) -> SipMessage | None:
        """Send ``msg``; its final response, or None after ``within`` seconds or on closure.

        ``on_final`` sees the final response as it is read, before the caller resumes: a
        request read right behind it is then handled knowing it (a 2xx's dialog)."""
        key = _key(msg)
        future: asyncio.Future[SipMessage | None] = asyncio.get_running_loop().create_future()
        provisional_seen = False

        def provisional(resp: SipMessage, via: Link) -> None:
            nonlocal provisional_seen
            provisional_seen = True
            if on_provisional is not None:
                on_provisional(resp, via)

        self._pending[key] = _Pending(future, provisional, on_final, link)
        deadline = time.monotonic() + within
        interval = T1
        try:
            self.send(msg, link)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait = min(interval, left) if link.transport == "udp" else left
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait)
                except TimeoutError:
                    # UDP only: INVITE stops retransmitting once a provisional came (17.1.1.2).
                    if link.transport == "udp" and not (
                        msg.method == "INVITE" and provisional_seen
                    ):
                        self.trace("->", f"(retransmit) {msg.summary()}")
                        link.send(msg)
                    interval = interval * 2 if msg.method == "INVITE" else min(interval * 2, T2)
        finally:
            del self._pending[key]
