"""SIP message parsing and building, checked against what a real FreeSWITCH sent."""

from __future__ import annotations

import json

import pytest

from ivagate_kit.sipmsg import NameAddr, SipError, SipMessage, SipUri, Via, split_list


def test_recorded_messages_parse(recorded_messages: list[bytes]) -> None:
    """The five recorded messages parse into the expected start lines and headers."""
    msgs = [SipMessage.parse(raw) for raw in recorded_messages]
    assert [m.summary() for m in msgs] == [
        "100 Trying (INVITE)",
        "200 OK (INVITE)",
        "INFO sip:ringcx@127.0.0.1:46440;transport=udp",
        "INFO sip:ringcx@127.0.0.1:46440;transport=udp",
        "200 OK (BYE)",
    ]
    ok, info = msgs[1], msgs[3]
    assert ok.to.tag == "S9r95Xjv5S0Fp"
    assert ok.headers["contact"] == "<sip:15550001000@127.0.0.1:5080;transport=udp>"
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80" in ok.body
    assert info.cseq == (123308046, "INFO")
    assert info.top_via.branch == "z9hG4bKpeND2tvDpr0rK"
    assert json.loads(info.body) == {"intent": "Technical Support", "final": True}


def test_body_is_cut_at_content_length_in_bytes(recorded_messages: list[bytes]) -> None:
    """The body ends at Content-Length bytes; the separator newline after it is not kept."""
    info = SipMessage.parse(recorded_messages[2])
    assert len(info.body.encode()) == int(info.headers["Content-Length"]) == 79


def test_encode_parse_round_trip(recorded_messages: list[bytes]) -> None:
    """Encoding a parsed message and parsing it again gives the same headers and body."""
    for raw in recorded_messages:
        first = SipMessage.parse(raw)
        again = SipMessage.parse(first.encode())
        assert again.headers.items_in_order() == first.headers.items_in_order()
        assert (again.body, again.status, again.method) == (first.body, first.status, first.method)


def test_compact_folded_and_comma_separated_headers() -> None:
    """Compact names expand, folded lines join, and Via/Record-Route lists split per entry."""
    raw = (
        b"INFO sip:a@h SIP/2.0\r\n"
        b"v: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n"
        b"Record-Route: <sip:10.0.0.1;lr>,\r\n <sip:10.0.0.9:5070;lr>\r\n"
        b"i: abc\r\nf: <sip:x@y>;tag=1\r\nt: <sip:a@h>\r\nCSeq: 7 INFO\r\n"
        b"c: application/json\r\nl: 2\r\n\r\n{}"
    )
    msg = SipMessage.parse(raw)
    assert len(msg.headers.get_all("Via")) == 2
    assert msg.headers.get_all("record-route") == ["<sip:10.0.0.1;lr>", "<sip:10.0.0.9:5070;lr>"]
    assert (msg.call_id, msg.content_type, msg.body) == ("abc", "application/json", "{}")
    assert msg.top_via.transport == "TCP" and msg.top_via.port == 5060


def test_response_copies_the_transaction_headers(recorded_messages: list[bytes]) -> None:
    """A response copies Via, From, To (adding our tag), Call-ID and CSeq from its request."""
    info = SipMessage.parse(recorded_messages[2])
    resp = info.response(415)
    assert resp.reason == "Unsupported Media Type"
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        assert resp.headers.get_all(name) == info.headers.get_all(name)
    invite = SipMessage.request(
        "INVITE",
        "sip:1@h",
        [("Via", "SIP/2.0/UDP a;branch=z9hG4bKx"), ("To", "<sip:1@h>"), ("CSeq", "1 INVITE")],
    )
    assert invite.response(200, to_tag="T").to.tag == "T"


@pytest.mark.parametrize(
    "raw",
    [b"hello world\r\n\r\n", b"SIP/2.0 2x0 OK\r\n\r\n", b"INFO sip:a SIP/2.0\r\nNoColon\r\n\r\n"],
)
def test_garbage_is_refused_with_a_reason(raw: bytes) -> None:
    """Bytes that are not SIP raise SipError saying what is wrong."""
    with pytest.raises(SipError, match=r"bad"):
        SipMessage.parse(raw)


def test_uri_name_addr_and_via_values() -> None:
    """URIs, name-addrs and Via values parse into their parts and print back."""
    uri = SipUri.parse("sip:ringcx@127.0.0.1:46440;transport=udp")
    assert (uri.user, uri.host, uri.port, uri.params) == (
        "ringcx",
        "127.0.0.1",
        46440,
        {"transport": "udp"},
    )
    assert str(uri) == "sip:ringcx@127.0.0.1:46440;transport=udp"
    assert SipUri.parse("sip:edge.example;lr").address("tls") == ("edge.example", 5061)
    na = NameAddr.parse('"Bot" <sip:1@h;transport=tcp>;tag=abc')
    assert (na.display, na.uri, na.tag) == ("Bot", "sip:1@h;transport=tcp", "abc")
    via = Via.parse("SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bKN5")
    assert (via.port, via.branch, via.params["rport"]) == (5080, "z9hG4bKN5", "")
    assert split_list('"a, b" <sip:x>, <sip:y;p=1,2>') == ['"a, b" <sip:x>', "<sip:y;p=1,2>"]
    with pytest.raises(SipError):
        SipUri.parse("http://example.com")
