"""Dialog routing: route sets from Record-Route, loose and strict next hops."""

from __future__ import annotations

from ivagate_kit.dialog import Dialog
from ivagate_kit.sipmsg import Headers, SipMessage

INVITE = SipMessage.request(
    "INVITE",
    "sip:15550001000@edge.example:5061;transport=tls",
    [
        ("Via", "SIP/2.0/TLS 192.0.2.10:40000;branch=z9hG4bKa;rport"),
        ("Record-Route", "<sip:10.0.0.1:5060;transport=tcp;lr>"),
        ("Record-Route", "<sip:203.0.113.5:5061;transport=tls;lr>"),
        ("From", "<sip:+16505550100@192.0.2.10>;tag=caller"),
        ("To", "<sip:15550001000@edge.example>"),
        ("Call-ID", "c1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:ringcx@192.0.2.10:40001;transport=tls>"),
    ],
)


def _ok(record_routes: list[str]) -> SipMessage:
    """The node's 200 OK as the caller gets it, carrying ``record_routes``."""
    ok = INVITE.response(200, to_tag="node")
    ok.headers = Headers([(n, v) for n, v in ok.headers.items_in_order() if n != "Record-Route"])
    for rr in record_routes:
        ok.headers.add("Record-Route", rr)
    ok.headers.add("Contact", "<sip:node@10.0.0.7:5080;transport=tcp>")
    return ok


def test_uac_routes_in_reverse_record_route_order() -> None:
    """The caller's BYE goes to the edge's public side with Route in reverse and R-URI = Contact."""
    rrs = INVITE.headers.get_all("Record-Route")
    dialog = Dialog.as_uac(INVITE, _ok(rrs), "tls", "192.0.2.10:40001")
    bye = dialog.request("BYE")
    assert bye.uri == "sip:node@10.0.0.7:5080;transport=tcp"
    assert bye.headers.get_all("Route") == list(reversed(rrs))
    assert dialog.next_hop() == ("203.0.113.5", 5061)
    assert bye.cseq == (2, "BYE") and bye.to.tag == "node" and bye.from_.tag == "caller"
    ack = dialog.request("ACK", cseq=1)
    assert ack.cseq == (1, "ACK") and dialog.cseq == 2


def test_uas_routes_in_record_route_order() -> None:
    """The node's INFO goes to the edge's inside address first, R-URI = the caller's Contact."""
    dialog = Dialog.as_uas(
        INVITE,
        local_tag="node",
        contact="<sip:node@10.0.0.7:5080>",
        transport="tcp",
        sent_by="10.0.0.7:5080",
        cseq=100,
    )
    info = dialog.request("INFO", "{}", "application/json")
    assert info.uri == "sip:ringcx@192.0.2.10:40001;transport=tls"
    assert info.headers.get_all("Route") == INVITE.headers.get_all("Record-Route")
    assert dialog.next_hop() == ("10.0.0.1", 5060)
    assert (info.from_.tag, info.to.tag, info.cseq) == ("node", "caller", (101, "INFO"))


def test_strict_router_gets_the_request_uri() -> None:
    """Without ;lr the first route becomes the Request-URI and the target goes last in Route."""
    dialog = Dialog.as_uac(INVITE, _ok(["<sip:198.51.100.1:5070>"]), "udp", "192.0.2.10:40000")
    bye = dialog.request("BYE")
    assert bye.uri == "sip:198.51.100.1:5070"
    assert bye.headers.get_all("Route") == ["<sip:node@10.0.0.7:5080;transport=tcp>"]
    assert dialog.next_hop() == ("198.51.100.1", 5070)


def test_no_route_set_goes_to_the_contact() -> None:
    """With no Record-Route the request goes straight to the remote Contact."""
    dialog = Dialog.as_uac(INVITE, _ok([]), "tcp", "192.0.2.10:40001")
    assert dialog.request("BYE").headers.get_all("Route") == []
    assert dialog.next_hop() == ("10.0.0.7", 5080)
