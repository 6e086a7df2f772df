"""Dialog state and in-dialog requests (RFC 3261 12.1-12.2), routed by the route set.

The UAC takes the route set from the 2xx's Record-Route in reverse, the UAS from the INVITE's
Record-Route in order. Loose routers (``;lr``) keep the remote target in the Request-URI and
the whole route set in Route; a strict router gets the Request-URI and the target goes last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ivagate_kit.sipmsg import NameAddr, SipMessage, SipUri, new_branch
from ivagate_kit.transport import Address, TransportName

__all__ = ["USER_AGENT", "Dialog", "via_value"]

USER_AGENT = "ivagate-emulator"


def via_value(transport: TransportName, sent_by: str) -> str:
    """A new client transaction's Via, asking for ``rport`` (RFC 3581)."""
    return f"SIP/2.0/{transport.upper()} {sent_by};branch={new_branch()};rport"


@dataclass
class Dialog:
    """One side of a dialog: enough to build and route the next request."""

    call_id: str
    local: NameAddr  # goes in From
    remote: NameAddr  # goes in To
    remote_target: str
    contact: str  # our Contact header value
    transport: TransportName
    sent_by: str  # host:port for our Via
    cseq: int
    route_set: list[str] = field(default_factory=list)

    @classmethod
    def as_uac(
        cls, invite: SipMessage, ok: SipMessage, transport: TransportName, sent_by: str
    ) -> Dialog:
        return cls(
            call_id=invite.call_id,
            local=invite.from_,
            remote=ok.to,
            remote_target=NameAddr.parse(ok.headers.get("Contact", invite.uri)).uri,
            contact=invite.headers.get("Contact", ""),
            transport=transport,
            sent_by=sent_by,
            cseq=invite.cseq[0],
            route_set=list(reversed(ok.headers.get_all("Record-Route"))),
        )

    @classmethod
    def as_uas(
        cls,
        invite: SipMessage,
        *,
        local_tag: str,
        contact: str,
        transport: TransportName,
        sent_by: str,
        cseq: int,
    ) -> Dialog:
        local = invite.to
        local.params["tag"] = local_tag
        return cls(
            call_id=invite.call_id,
            local=local,
            remote=invite.from_,
            remote_target=NameAddr.parse(invite.headers.get("Contact", "")).uri,
            contact=contact,
            transport=transport,
            sent_by=sent_by,
            cseq=cseq,
            route_set=invite.headers.get_all("Record-Route"),
        )

    def _first_hop(self) -> tuple[str, list[str], str]:
        """(Request-URI, Route values, URI of the next hop)."""
        if not self.route_set:
            return self.remote_target, [], self.remote_target
        first = NameAddr.parse(self.route_set[0]).uri
        if "lr" in SipUri.parse(first).params:
            return self.remote_target, list(self.route_set), first
        return first, [*self.route_set[1:], f"<{self.remote_target}>"], first

    def next_hop(self) -> Address:
        return SipUri.parse(self._first_hop()[2]).address(self.transport)

    def request(
        self,
        method: str,
        body: str = "",
        content_type: str | None = None,
        *,
        cseq: int | None = None,
    ) -> SipMessage:
        """The next in-dialog request; ``cseq`` given (for ACK) leaves the counter alone."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        uri, routes, _ = self._first_hop()
        headers = [
            ("Via", via_value(self.transport, self.sent_by)),
            ("Max-Forwards", "70"),
            ("From", str(self.local)),
            ("To", str(self.remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            *(("Route", r) for r in routes),
        ]
        if method != "ACK":
            headers += [("Contact", self.contact), ("User-Agent", USER_AGENT)]
        if content_type:
            headers.append(("Content-Type", content_type))
        return SipMessage.request(method, uri, headers, body)
