"""One call placed the way RingCX places it, with every expectation of the guide checked.

Over TCP/TLS the caller opens ONE connection and expects every response and in-dialog request
on it; it pings with CRLFCRLF (RFC 5626) and advertises a Contact address that it listens on
only to count what (wrongly) arrives there. Over UDP the Contact is the socket it sends from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import time

from ivagate_kit.agent import Agent
from ivagate_kit.audio import play_frames, write_wav
from ivagate_kit.dialog import USER_AGENT, Dialog, via_value
from ivagate_kit.dtmf import info_body
from ivagate_kit.plan import CallPlan
from ivagate_kit.report import CallReport, ReceivedInfo
from ivagate_kit.rtp import RtpSession
from ivagate_kit.sdp import Sdp, answer_problems, build_offer
from ivagate_kit.sipmsg import NameAddr, SipMessage, new_tag
from ivagate_kit.tls import client_context
from ivagate_kit.transport import PING, Link, Listener, close_link, connect, listen

__all__ = ["run_call"]

BYE_TIMEOUT = 16.0  # 32*T1 is the RFC's limit; a healthy edge answers in milliseconds
CANCEL_WAIT = 4.0  # after CANCEL, how long to wait for the 487 before giving up
MEDIA_PORT = 4000  # advertised only, when the plan has no media


async def run_call(plan: CallPlan) -> CallReport:
    """Place one call per ``plan`` and return what happened, checks included."""
    return await _Call(plan).run()


class _ContactSpy:
    """Counts anything that reaches the Contact address on tcp/tls (RingCX ignores it)."""

    def __init__(self, call: _Call) -> None:
        self.call = call

    def message(self, msg: SipMessage, link: Link) -> None:
        self.call.trace("<-", f"[at Contact] {msg.summary()}")

    def keepalive(self, data: bytes, link: Link) -> None:
        return None

    def bad_data(self, error: str, link: Link) -> None:
        self.call.trace("<-", f"[at Contact] unreadable data ({error})")
        close_link(link)

    def connected(self, link: Link) -> None:
        self.call.report.contact_attempts += 1
        self.call.trace("<-", f"[at Contact] connection from {link.peer[0]}:{link.peer[1]}")

    def closed(self, link: Link) -> None:
        return None


class _Call:
    def __init__(self, plan: CallPlan) -> None:
        self.plan = plan
        self.start = time.monotonic()
        host = plan.local_host
        self.report = CallReport(
            target=plan.target,
            transport=plan.transport,
            did=plan.did,
            call_id=f"{secrets.token_hex(8)}@{host}",
        )
        self.agent = Agent(
            on_request=self.on_request,
            trace=self.trace,
            on_stray_response=self.on_stray_response,
            on_closed=self.on_closed,
        )
        self.listeners: list[Listener] = []
        self.link: Link | None = None
        self.rtp: RtpSession | None = None
        self.invite: SipMessage | None = None
        self.dialog: Dialog | None = None
        self.sent_by = ""
        self.cancelled = False
        self.late_final = asyncio.Event()  # a final INVITE response after we stopped waiting
        self.final_info = asyncio.Event()
        self.remote_bye = asyncio.Event()
        self.connection_lost = asyncio.Event()
        self.info_count = 0
        self.acked = False  # the 2xx's ACK has been sent
        self.unanswered: set[int] = set()  # CSeqs of INFOs left unanswered (info_answer)
        self.closing = False
        self.call_over = False  # BYE done either way, or the INVITE failed

    def trace(self, direction: str, text: str) -> None:
        self.report.timeline.append((self.now(), direction, text))

    def now(self) -> float:
        return time.monotonic() - self.start

    # --- the call, step by step -----------------------------------------------------------
    async def run(self) -> CallReport:
        pinger: asyncio.Task[None] | None = None
        try:
            await self.open_transport()
            pinger = asyncio.create_task(self.ping()) if self.pings_wanted() else None
            ok = await self.send_invite()
            if ok is not None:
                await self.refresh()
                await self.hold_call(ok)
        except (OSError, ssl.SSLError, TimeoutError) as e:
            self.report.check(
                "connect to the target", False, f"{type(e).__name__}: {e}".strip(": ")
            )
        finally:
            if pinger is not None:
                pinger.cancel()
            self.conclude()
            await self.close()
        return self.report

    async def open_transport(self) -> None:
        plan = self.plan
        if plan.media:
            self.rtp = await RtpSession.bind(plan.local_host)
        if plan.transport == "udp":
            sock = await listen("udp", plan.local_host, 0, self.agent)
            self.listeners.append(sock)
            self.link = sock.link_to(plan.address)
            contact_at = sock.local
        else:
            # A plain TCP listener counts TLS attempts too: the TCP accept is the attempt.
            spy = await listen("tcp", plan.local_host, 0, _ContactSpy(self))
            self.listeners.append(spy)
            contact_at = spy.local
            tls = None
            if plan.transport == "tls":
                tls = client_context(
                    verify=plan.tls_verify, ca=plan.tls_ca, cert=plan.tls_cert, key=plan.tls_key
                )
            self.link = await connect(
                plan.transport,
                plan.address,
                self.agent,
                local_host=plan.local_host,
                ssl_context=tls,
                within=plan.timeout,
            )
            self.trace(
                "->", f"connected {self.link.local[0]}:{self.link.local[1]} -> {plan.target}"
            )
        self.sent_by = f"{contact_at[0]}:{contact_at[1]}"

    def pings_wanted(self) -> bool:
        return self.plan.transport != "udp" and self.plan.ping_interval > 0

    async def ping(self) -> None:
        while True:
            await asyncio.sleep(self.plan.ping_interval)
            if self.link is None or self.link.closed:
                return
            self.link.send_bytes(PING)
            self.report.pings_sent += 1
            self.trace("->", "ping (CRLFCRLF)")

    def build_invite(self) -> SipMessage:
        plan = self.plan
        host, port = plan.address
        host = f"[{host}]" if ":" in host else host
        param = "" if plan.transport == "udp" else f";transport={plan.transport}"
        headers = [
            ("Via", via_value(plan.transport, self.sent_by)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{plan.caller}@{plan.local_host}>;tag={new_tag()}"),
            ("To", f"<sip:{plan.did}@{host}>"),
            ("Call-ID", self.report.call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:ringcx@{self.sent_by}{param}>"),
            ("User-Agent", USER_AGENT),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"),
            *plan.headers.items(),
            ("Content-Type", "application/sdp"),
        ]
        media_port = MEDIA_PORT if self.rtp is None else self.rtp.port
        body = build_offer(plan.local_host, media_port, plan.offer_srtp)
        return SipMessage.request("INVITE", f"sip:{plan.did}@{host}:{port}{param}", headers, body)

    async def send_invite(self) -> SipMessage | None:
        """INVITE until a final response; the 2xx when answered, else None."""
        assert self.link is not None
        self.invite = invite = self.build_invite()
        provisional = False

        def on_provisional(msg: SipMessage, link: Link) -> None:
            nonlocal provisional
            provisional = True

        def on_final(msg: SipMessage, link: Link) -> None:
            # the dialog exists from its 2xx on, before this coroutine resumes: an INFO read
            # right behind the 2xx belongs to it
            if msg.status < 300:
                self.establish(msg)

        sent = time.monotonic()
        final = await self.agent.request(
            invite, self.link, self.plan.timeout, on_provisional, on_final
        )
        self.report.answer_after = time.monotonic() - sent
        if final is None:
            self.report.check(
                f"INVITE final status is {self.plan.expect}",
                False,
                "connection closed before a final response"
                if self.connection_lost.is_set()
                else f"no final response within {self.plan.timeout:g}s",
            )
            if provisional and not self.connection_lost.is_set():
                await self.cancel()
            return None
        self.report.invite_status = final.status
        self.report.check(
            f"INVITE final status is {self.plan.expect}",
            final.status == self.plan.expect,
            final.summary(),
        )
        if final.status < 300 and self.plan.ack_delay:
            self.dialog = Dialog.as_uac(self.invite, final, self.plan.transport, self.sent_by)
            await asyncio.sleep(self.plan.ack_delay)
        self.ack(final)
        if final.status >= 300:
            self.call_over = True
            return None
        problems = answer_problems(invite.body, final.body)
        self.report.check("SDP answer fits the offer", not problems, "; ".join(problems))
        return final

    def establish(self, final: SipMessage) -> Dialog:
        """The dialog of the first 2xx (a retransmitted or late 2xx finds it made)."""
        assert self.invite is not None
        if self.dialog is None:
            self.dialog = Dialog.as_uac(self.invite, final, self.plan.transport, self.sent_by)
            self.open_media(final.body)
        return self.dialog

    def open_media(self, answer_body: str) -> None:
        """Take the answer's media address and SRTP key; an answer unfit for the offer (its
        check says why) opens nothing."""
        assert self.invite is not None
        if self.rtp is None or answer_problems(self.invite.body, answer_body):
            return
        offer, answer = Sdp.parse(self.invite.body), Sdp.parse(answer_body)
        send_key = offer.srtp_key
        self.rtp.open((answer.host, answer.port), send_key, answer.srtp_key if send_key else None)

    def ack(self, final: SipMessage) -> None:
        """ACK a final INVITE response: 2xx end to end in the dialog, others hop by hop."""
        assert self.invite is not None and self.link is not None
        if final.status >= 300:
            inv = self.invite
            headers = [
                ("Via", inv.headers["Via"]),
                ("Max-Forwards", "70"),
                ("From", inv.headers["From"]),
                ("To", final.headers["To"]),
                ("Call-ID", inv.call_id),
                ("CSeq", f"{inv.cseq[0]} ACK"),
            ]
            self.agent.send(SipMessage.request("ACK", inv.uri, headers), self.link)
            return
        dialog = self.establish(final)
        ack = dialog.request("ACK", cseq=self.invite.cseq[0])
        self.agent.send(ack, self.dialog_link())
        self.acked = True
        rtp = self.rtp
        if rtp is not None and rtp.remote is not None and not rtp.playing:
            # answered: the caller talks (silence is sent too, as phones do)
            rtp.play(play_frames(self.plan.play))
            host, port = rtp.remote
            self.trace("->", f"RTP{'/SRTP' if rtp.srtp else ''} {self.plan.play} to {host}:{port}")

    def dialog_link(self) -> Link:
        """Where in-dialog requests go: RingCX's one connection, or the next hop over UDP."""
        assert self.link is not None and self.dialog is not None
        if self.plan.transport != "udp":
            return self.link
        link = self.listeners[0].link_to(self.dialog.next_hop())
        assert link is not None
        return link

    async def cancel(self) -> None:
        """CANCEL an INVITE left at a provisional response (RFC 3261 9.1)."""
        assert self.invite is not None and self.link is not None
        self.cancelled = True
        inv = self.invite
        headers = [
            ("Via", inv.headers["Via"]),
            ("Max-Forwards", "70"),
            ("From", inv.headers["From"]),
            ("To", inv.headers["To"]),
            ("Call-ID", inv.call_id),
            ("CSeq", f"{inv.cseq[0]} CANCEL"),
        ]
        await self.agent.request(
            SipMessage.request("CANCEL", inv.uri, headers), self.link, CANCEL_WAIT
        )
        # The INVITE's 487 arrives after its transaction gave up: on_stray_response ACKs it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.late_final.wait(), CANCEL_WAIT)

    async def refresh(self) -> None:
        """The plan's mid-call re-INVITEs and UPDATEs (session refresh, hold), in order. Like
        RingCX's, each carries the plain Contact of the INVITE: the far end takes it as the new
        remote target, so an edge must mark it again for its requests to ride the connection."""
        assert self.dialog is not None and self.invite is not None
        for number, kind in enumerate(self.plan.refresh, 1):
            if self.remote_bye.is_set() or self.connection_lost.is_set():
                return
            name = f"{'re-INVITE' if kind == 'reinvite' else 'UPDATE'} #{number}"
            if kind == "reinvite":  # the same offer again: a refresh that changes nothing
                request = self.dialog.request("INVITE", self.invite.body, "application/sdp")
            else:
                request = self.dialog.request("UPDATE")
            final = await self.agent.request(
                request, self.dialog_link(), min(BYE_TIMEOUT, self.plan.timeout)
            )
            self.report.check(
                f"{name} answered 200",
                final is not None and final.status == 200,
                final.summary() if final else "no response",
            )
            if final is None or final.status >= 300:
                continue
            if kind == "reinvite":
                ack = self.dialog.request("ACK", cseq=request.cseq[0])
                self.agent.send(ack, self.dialog_link())
                problems = answer_problems(request.body, final.body)
                self.report.check(
                    f"{name}: SDP answer fits the offer", not problems, "; ".join(problems)
                )
                self.open_media(final.body)
            contact = final.headers.get("Contact")
            if contact:  # a target refresh both ways (RFC 3261 12.2.1.2)
                self.dialog.remote_target = NameAddr.parse(contact).uri

    async def hold_call(self, ok: SipMessage) -> None:
        """Stay in the call (pressing the plan's keys) until the BYE policy says hang up, or
        the far end does."""
        plan = self.plan
        ended = asyncio.create_task(self.first_of(self.remote_bye, self.connection_lost))
        keys = asyncio.create_task(self.press_keys(Sdp.parse(ok.body))) if plan.dtmf else None
        try:
            if plan.bye == "final":
                waiter = asyncio.create_task(self.final_info.wait())
                await asyncio.wait(
                    {waiter, ended}, timeout=plan.timeout, return_when="FIRST_COMPLETED"
                )
                waiter.cancel()
                self.report.check(
                    "final intent received (INFO with final: true)",
                    self.final_info.is_set(),
                    "" if self.final_info.is_set() else f"none within {plan.timeout:g}s",
                )
            elif plan.bye == "never":
                await asyncio.wait({ended}, timeout=plan.timeout)
                self.report.check(
                    "far end ended the call",
                    self.remote_bye.is_set(),
                    "" if self.remote_bye.is_set() else f"no BYE within {plan.timeout:g}s",
                )
            else:
                await asyncio.wait({ended}, timeout=plan.bye)
            if not ended.done() and plan.bye != "never":
                await self.send_bye()
        finally:
            ended.cancel()
            if keys is not None:
                keys.cancel()

    async def press_keys(self, answer: Sdp) -> None:
        """Send the plan's DTMF: RTP telephone-events to the answer's media address, or one
        INFO per key, each answered before the next."""
        plan = self.plan
        await asyncio.sleep(plan.dtmf_delay)
        if self.plan.dtmf_mode == "rfc2833":
            self.report.check(
                "the answer accepts telephone-event (RFC 2833 DTMF)",
                answer.event_type is not None,
                "" if answer.event_type is not None else f"none in {answer.media!r}",
            )
            if answer.event_type is not None and self.rtp is not None and self.rtp.playing:
                self.trace(
                    "->", f"DTMF {plan.dtmf} as RTP events (payload type {answer.event_type})"
                )
                await self.rtp.press(plan.dtmf, answer.event_type)
            return
        assert self.dialog is not None
        for digit in plan.dtmf:
            info = self.dialog.request("INFO", info_body(digit), "application/dtmf-relay")
            resp = await self.agent.request(info, self.dialog_link(), plan.timeout)
            self.report.check(
                f"DTMF INFO {digit!r} answered 200",
                resp is not None and resp.status == 200,
                resp.summary() if resp else "no response",
            )

    @staticmethod
    async def first_of(*events: asyncio.Event) -> None:
        waits = [asyncio.create_task(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, return_when="FIRST_COMPLETED")
        finally:
            for w in waits:
                w.cancel()

    async def send_bye(self) -> None:
        assert self.dialog is not None
        bye = self.dialog.request("BYE")
        resp = await self.agent.request(
            bye, self.dialog_link(), min(BYE_TIMEOUT, self.plan.timeout)
        )
        self.call_over = True
        self.report.bye_status = resp.status if resp else None
        self.report.check(
            "BYE answered 200",
            resp is not None and resp.status == 200,
            resp.summary() if resp else "no response",
        )

    # --- what the far end sends ------------------------------------------------------------
    def on_stray_response(self, msg: SipMessage, link: Link) -> None:
        """A retransmitted final INVITE response (UDP) or one after CANCEL: ACK it again."""
        if msg.is_request or msg.cseq[1] != "INVITE" or msg.status < 200:
            return
        if self.invite is None or msg.call_id != self.invite.call_id:
            return
        self.ack(msg)
        self.late_final.set()
        if msg.status < 300 and self.cancelled and not self.remote_bye.is_set():
            # Answered after we gave up: hang up so no call is left behind.
            asyncio.get_running_loop().create_task(self.send_bye())

    def on_closed(self, link: Link) -> None:
        if link is self.link and not self.closing:
            self.trace("<-", "connection closed by the far end")
            if not self.call_over:  # closing after the last transaction is the peer's right
                self.connection_lost.set()

    def on_request(self, msg: SipMessage, link: Link) -> None:
        if msg.method == "ACK":
            return
        dialog = self.dialog
        in_dialog = (
            dialog is not None
            and msg.call_id == dialog.call_id
            and msg.to.tag == dialog.local.tag
            and msg.from_.tag == dialog.remote.tag
        )
        if msg.method == "OPTIONS":
            self.agent.reply(msg, msg.response(200), link)
        elif not in_dialog:
            self.agent.reply(msg, msg.response(481), link)
            if msg.method in ("INFO", "BYE"):
                self.report.check(
                    f"{msg.method} belongs to the call", False, f"{msg.summary()}: unknown dialog"
                )
        elif msg.method == "BYE":
            self.report.bye_from_remote = True
            self.call_over = True
            self.agent.reply(msg, msg.response(200), link)
            self.remote_bye.set()
        elif msg.method == "INFO":
            self.on_info(msg, link)
        else:
            self.agent.reply(msg, msg.response(488 if msg.method == "INVITE" else 501), link)

    def on_info(self, msg: SipMessage, link: Link) -> None:
        """``plan.info_answer`` (200) for a JSON object sent as application/json; 415/400 and
        a failed check if not. Flags an INFO that came before our ACK of the 2xx."""
        if msg.cseq[0] in self.unanswered:
            return  # a retransmission of an INFO we leave unanswered
        self.info_count += 1
        self.report.check(
            f"INFO #{self.info_count} came after our ACK",
            self.acked,
            "" if self.acked else "it overtook the ACK of the 2xx",
        )
        media_type = msg.content_type.split(";")[0].strip().lower()
        obj = None
        answer = self.plan.info_answer
        if media_type != "application/json":
            status, problem = 415, f"Content-Type is {msg.content_type!r}"
        else:
            try:
                obj = json.loads(msg.body)
                status, problem = (200, "") if isinstance(obj, dict) else (400, "not an object")
            except json.JSONDecodeError as e:
                status, problem = 400, f"not JSON: {e}"
        json_obj = obj if isinstance(obj, dict) else None
        self.report.infos.append(ReceivedInfo(self.now(), msg.content_type, msg.body, json_obj))
        answered = answer if status == 200 else status
        if not isinstance(answered, int):
            self.unanswered.add(msg.cseq[0])
        else:
            response = msg.response(answered)
            if status == 415:
                response.headers.add("Accept", "application/json")
            self.agent.reply(msg, response, link)
        self.report.check(
            f"INFO #{self.info_count} is a JSON object sent as application/json",
            status == 200,
            problem,
        )
        if json_obj is not None and json_obj.get("final") is True:
            self.final_info.set()

    # --- the end ---------------------------------------------------------------------------
    def conclude(self) -> None:
        report = self.report
        report.duration = self.now()
        report.pongs_received = self.agent.pongs_received
        if self.rtp is not None:
            self.rtp.close()  # the call is over: what was heard is all there is
            report.media = self.rtp.report(self.plan.tones)
            if self.plan.record:
                write_wav(self.plan.record, report.media.samples())
        if self.plan.transport != "udp":
            report.check(
                "nothing reached the Contact address",
                report.contact_attempts == 0,
                f"{report.contact_attempts} connection(s) to the Contact address",
            )
            if self.link is not None:
                report.check(
                    "the connection stayed open for the whole call",
                    not self.connection_lost.is_set(),
                    "closed by the far end" if self.connection_lost.is_set() else "",
                )
        report.check(
            "every message received was readable",
            not self.agent.errors,
            "; ".join(self.agent.errors[:3]),
        )

    async def close(self) -> None:
        self.closing = True
        if self.link is not None:
            close_link(self.link)
        for listener in self.listeners:
            await listener.close()
