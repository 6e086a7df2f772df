"""A stand-in media node: a scripted UAS that lets the edge be tested without FreeSWITCH.

It answers INVITEs per its ``NodeScript`` (200 with an SDP answer mirroring the offer, an
error code, or "hang" after 100 Trying), then sends the scripted INFOs and BYE in the dialog
along the Record-Route route set. On TCP/TLS it answers on the connection a request came on
and sends in-dialog requests over the INVITE's connection when the next hop is that peer's
host (as FreeSWITCH must do behind the edge), opening a new connection only otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ivagate_kit.agent import T1, T2, Agent, Trace
from ivagate_kit.dialog import Dialog
from ivagate_kit.rtp import RtpSession
from ivagate_kit.sdp import Sdp, build_answer
from ivagate_kit.sipmsg import NameAddr, SipMessage, new_tag
from ivagate_kit.tls import client_context, server_context
from ivagate_kit.transport import (
    Address,
    Link,
    Listener,
    TransportName,
    close_link,
    connect,
    listen,
)

__all__ = ["MediaNode", "NodeScript"]

REQUEST_TIMEOUT = 32 * T1  # Timer F: how long an INFO/BYE waits for its response


@dataclass
class NodeScript:
    """What the node does with each INVITE."""

    answer: int | Literal["hang"] = 200  # 200, an error status, or "hang" (100 only)
    infos: list[dict[str, Any] | str] = field(default_factory=list)  # str: sent verbatim
    info_interval: float = 0.2  # seconds before each INFO (the first counts from the ACK)
    # True: the first INFO follows the 200 without waiting for the ACK, as FreeSWITCH's own
    # dialplan sends it after its answer (it may reach the caller right behind the 200)
    info_before_ack: bool = False
    bye_after: float | None = None  # seconds after the last INFO; None: wait for the BYE
    early: list[int] = field(default_factory=list)  # provisional statuses after 100 (180, 183)
    answer_delay: float = 0.0  # seconds between the last provisional and the final answer
    info_content_type: str = "application/json"
    # False: in-dialog requests go over a new connection to the next hop, as FreeSWITCH does
    # on its own over TCP -- what an edge must repair and a RingCX-like caller must flag.
    reuse_connection: bool = True

    def __post_init__(self) -> None:
        if self.answer != "hang" and not (
            isinstance(self.answer, int) and (self.answer == 200 or 300 <= self.answer <= 699)
        ):
            raise ValueError(f"answer must be 200, 300-699 or 'hang', not {self.answer!r}")
        if any(not 101 <= status <= 199 for status in self.early):
            raise ValueError(f"early statuses must be 101-199, not {self.early!r}")


@dataclass
class _NodeCall:
    invite: SipMessage
    link: Link
    tag: str
    dialog: Dialog | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    answered: bool = False
    answer: str = ""  # the SDP answer, given again to a re-INVITE
    rtp: RtpSession | None = None  # echoes the caller's RTP


class MediaNode:
    """``await node.start()``; read ``invites``, ``requests``, ``responses``; ``stop()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        transport: TransportName = "udp",
        script: NodeScript | None = None,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        advertise: str | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.transport: TransportName = transport
        self.script = script or NodeScript()
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.advertise = advertise  # host[:port] for Contact/Via when listening on 0.0.0.0
        self.invites: list[SipMessage] = []
        self.requests: list[SipMessage] = []
        self.responses: list[SipMessage] = []  # answers to the node's own INFO/BYE
        self.calls: dict[str, _NodeCall] = {}
        self.agent = Agent(on_request=self._on_request, on_stray_response=self._on_stray)
        if trace is not None:
            self.agent.trace = trace
        self._listener: Listener | None = None
        self._outbound: dict[Address, Link] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()
        self._client_tls: ssl.SSLContext | None = None

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the node is not started")
        return self._listener.local[1]

    async def start(self) -> None:
        tls = server_context(self.tls_cert, self.tls_key) if self.transport == "tls" else None
        self._listener = await listen(
            self.transport, self.host, self.requested_port, self.agent, tls
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._outbound.values():
            close_link(link)
        for call in self.calls.values():
            self._end(call)
        if self._listener is not None:
            await self._listener.close()

    async def __aenter__(self) -> MediaNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for(self, method: str, count: int = 1, within: float = 5.0) -> list[SipMessage]:
        """The received ``method`` requests once there are ``count``; TimeoutError otherwise."""

        def matching() -> list[SipMessage]:
            return [r for r in self.requests if r.method == method.upper()]

        await self.wait_until(lambda: len(matching()) >= count, within)
        return matching()

    async def wait_until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Return once ``condition()`` holds (checked on every message); TimeoutError otherwise."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), within)

    # --- requests --------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _on_request(self, msg: SipMessage, link: Link) -> None:
        self.requests.append(msg)
        self._spawn(self._notify())
        call = self.calls.get(msg.call_id)
        if msg.method == "INVITE" and msg.to.tag is None:
            if call is None:
                self.invites.append(msg)
                call = self.calls[msg.call_id] = _NodeCall(msg, link, new_tag())
                self._spawn(self._answer(call))
            # Also the answer to a retransmitted INVITE still waiting for its final response.
            self.agent.reply(msg, msg.response(100), link)
        elif msg.method == "ACK":
            if call is not None:
                call.acked.set()
        elif msg.method == "OPTIONS":
            self.agent.reply(msg, msg.response(200), link)
        elif msg.method == "CANCEL":
            self._on_cancel(msg, link, call)
        elif call is None or call.dialog is None or msg.to.tag != call.tag:
            self.agent.reply(msg, msg.response(481), link)
        elif msg.method == "BYE":
            self._end(call)
            self.agent.reply(msg, msg.response(200), link)
        elif msg.method in ("INVITE", "UPDATE"):
            self._on_refresh(msg, link, call)
        else:
            self.agent.reply(msg, msg.response(200), link)

    def _on_refresh(self, msg: SipMessage, link: Link, call: _NodeCall) -> None:
        """A re-INVITE or UPDATE: its Contact is the new remote target (RFC 3261 12.2.2), as
        FreeSWITCH takes it; 200 with our Contact and, for an offer, the answer again (the
        caller re-offers its session unchanged)."""
        dialog = call.dialog
        assert dialog is not None
        contact = msg.headers.get("Contact")
        if contact:
            dialog.remote_target = NameAddr.parse(contact).uri
        body = call.answer if msg.body else ""
        ok = msg.response(200, body=body)
        ok.headers.add("Contact", dialog.contact)
        if body:
            ok.headers.add("Content-Type", "application/sdp")
        self.agent.reply(msg, ok, link)

    def _on_cancel(self, msg: SipMessage, link: Link, call: _NodeCall | None) -> None:
        if call is None or call.answered:
            self.agent.reply(msg, msg.response(481), link)
            return
        self.agent.reply(msg, msg.response(200), link)
        call.answered = True
        self._end(call)
        self.agent.reply(call.invite, call.invite.response(487, to_tag=call.tag), call.link)

    def _on_stray(self, msg: SipMessage, link: Link) -> None:
        self.responses.append(msg)
        self._spawn(self._notify())

    # --- one call --------------------------------------------------------------------------
    def _own_address(self, link: Link) -> str:
        if self.advertise:
            return self.advertise if ":" in self.advertise else f"{self.advertise}:{self.port}"
        host = self.host if self.host not in ("0.0.0.0", "::", "") else link.local[0]
        return f"{host}:{self.port}"

    async def _answer(self, call: _NodeCall) -> None:
        script, invite = self.script, call.invite
        for status in script.early:
            self.agent.send(invite.response(status, to_tag=call.tag), call.link)
        if script.answer == "hang":
            return
        await asyncio.sleep(script.answer_delay)
        if call.answered:  # cancelled meanwhile
            return
        call.answered = True
        if script.answer >= 300:
            self.agent.reply(invite, invite.response(script.answer, to_tag=call.tag), call.link)
            self._end(call)
            return
        sent_by = self._own_address(call.link)
        contact = f"<sip:node@{sent_by};transport={self.transport}>"
        call.dialog = Dialog.as_uas(
            invite,
            local_tag=call.tag,
            contact=contact,
            transport=self.transport,
            sent_by=sent_by,
            cseq=secrets.randbelow(2**30),
        )
        call.rtp = await RtpSession.bind(self.host, echo=True)
        call.answer = build_answer(invite.body, sent_by.rpartition(":")[0], call.rtp.port)
        offer, answer = Sdp.parse(invite.body), Sdp.parse(call.answer)
        if offer.host and offer.port > 0 and (offer.srtp_key is None) == (answer.srtp_key is None):
            call.rtp.open((offer.host, offer.port), answer.srtp_key, offer.srtp_key)
        ok = invite.response(200, to_tag=call.tag, body=call.answer)
        ok.headers.add("Contact", contact)
        ok.headers.add("Content-Type", "application/sdp")
        acked = self._send_until_acked(invite, ok, call)
        if script.info_before_ack:  # as FreeSWITCH may: the INFOs do not wait for the ACK
            await asyncio.gather(acked, self._run_script(call))
        else:
            await acked
            await self._run_script(call)

    async def _send_until_acked(self, invite: SipMessage, ok: SipMessage, call: _NodeCall) -> None:
        """Send the 2xx, and on UDP resend it (timer G) until the ACK comes (RFC 3261 13.3.1.4)."""
        self.agent.reply(invite, ok, call.link)
        interval, waited = T1, 0.0
        while not call.acked.is_set() and waited < 64 * T1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.acked.wait(), interval)
            waited += interval
            if not call.acked.is_set() and call.link.transport == "udp":
                self.agent.send(ok, call.link)
            interval = min(interval * 2, T2)

    async def _run_script(self, call: _NodeCall) -> None:
        script = self.script
        for info in script.infos:
            await asyncio.sleep(script.info_interval)
            if call.ended.is_set():
                return
            body = info if isinstance(info, str) else json.dumps(info)
            await self._in_dialog(call, "INFO", body, script.info_content_type)
        if script.bye_after is not None:
            await asyncio.sleep(script.bye_after)
            if not call.ended.is_set():
                self._end(call)
                await self._in_dialog(call, "BYE")

    @staticmethod
    def _end(call: _NodeCall) -> None:
        call.ended.set()
        if call.rtp is not None:
            call.rtp.close()

    async def _in_dialog(
        self, call: _NodeCall, method: str, body: str = "", content_type: str | None = None
    ) -> None:
        assert call.dialog is not None
        request = call.dialog.request(method, body, content_type)
        hop = call.dialog.next_hop()
        try:
            link = await self._link_toward(hop, call.link)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            self.agent.errors.append(f"{method} to {hop[0]}:{hop[1]}: cannot connect: {e}")
            return
        response = await self.agent.request(request, link, REQUEST_TIMEOUT)
        if response is not None:
            self.responses.append(response)
            self._spawn(self._notify())

    async def _link_toward(self, hop: Address, came_on: Link) -> Link:
        """The INVITE's connection if the hop is that peer's host, else an existing or new one."""
        assert self._listener is not None
        if self.transport == "udp" or self.script.reuse_connection:
            if self.transport != "udp" and not came_on.closed and came_on.peer[0] == hop[0]:
                return came_on
            existing = self._listener.link_to(hop, same_host=self.transport != "udp")
            if existing is not None:
                return existing
        known = self._outbound.get(hop)
        if known is not None and not known.closed:
            return known
        if self.transport == "tls" and self._client_tls is None:
            self._client_tls = client_context(verify=False)
        link = await connect(self.transport, hop, self.agent, ssl_context=self._client_tls)
        self._outbound[hop] = link
        return link
