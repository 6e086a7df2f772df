"""Decoding the recorded INVITE variables and building the recorded INFO command."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from ivagate.bots.base import PayloadError
from ivagate.events import ChannelAnswer, ChannelPark, parse_event
from ivagate.info import encode_info, send_info_command
from ivagate.invite import Invite, decode_invite_headers, raw_invite_headers
from ivagate_kit.esl_double import load_recording
from support.recordings import ESL_RECORDINGS


def recorded_event(recording: str, name: str) -> object:
    """The first event ``name`` FreeSWITCH sent in ``recording``, parsed."""
    marker = f"Event-Name: {name}\n".encode()
    frame = next(
        f for d, f in load_recording(ESL_RECORDINGS, recording) if d == "<<<" and marker in f
    )
    _, _, body = frame.partition(b"\n\n")
    return parse_event(body.decode().rstrip("\n"))


def recorded_park(name: str) -> ChannelPark:
    event = recorded_event(name, "CHANNEL_PARK")
    assert isinstance(event, ChannelPark)
    return event


def test_invite_from_recorded_park() -> None:
    """Call-ID, DID, caller and transport come from the recorded CHANNEL_PARK."""
    invite = Invite.from_park(recorded_park("inbound-media.esl"))
    assert invite.uuid == "6108eba0-8de2-498b-afee-fc3c9b07b912"
    assert invite.sip_call_id == "4kwtw7i4zn3aeqk5@ringcx"
    assert invite.did == "21000001002"
    assert invite.caller == "+16505550100"
    assert invite.transport == "udp" and invite.source == "127.0.0.1:49410"
    assert invite.headers["call-id"] == "4kwtw7i4zn3aeqk5@ringcx"
    assert invite.headers["CSeq"] == "1 INVITE"
    assert invite.raw_headers["sip_i_cseq"] == "1%20INVITE"


@pytest.mark.parametrize(
    ("recording", "srtp"),
    [
        ("inbound-media.esl", True),  # RTP/SAVP offer with a=crypto, answered RTP/SAVP
        ("inbound-srtp-mandatory-ok.esl", True),  # the same with SRTP mandatory
        ("inbound-bot-hangup.esl", False),  # RTP/AVP offer, answered RTP/AVP
        ("inbound-caller-hangup.esl", False),
    ],
)
def test_srtp_comes_from_the_recorded_answer(recording: str, srtp: bool) -> None:
    """CHANNEL_ANSWER says whether FreeSWITCH's answer negotiated SRTP."""
    answer = recorded_event(recording, "CHANNEL_ANSWER")
    assert isinstance(answer, ChannelAnswer)
    assert answer.srtp is srtp


def test_x_headers_keep_spelling_and_decode() -> None:
    """Recorded X- headers: case-insensitive lookup, original spelling, URL-decoded values."""
    frame = next(
        f
        for d, f in load_recording(ESL_RECORDINGS, "outbound-call-srtp.esl")
        if b"variable_sip_i_x_bot_id" in f
    )
    headers, raw = decode_invite_headers(frame.decode()), raw_invite_headers(frame.decode())
    assert headers["x-bot-id"] == "support"
    assert headers["X-Bot-Data"] == '{"botData":{"ani":"+16058779330"}}'
    assert "X-RingCX-Session" in list(headers.keys())
    assert raw["sip_i_x_bot_data"].startswith("%7B%22botData")


def test_edge_headers_name_transport_and_source() -> None:
    """X-Edge-Transport / X-Edge-Source (added by the edge) override the last hop's view."""
    park = recorded_park("inbound-media.esl")
    text = park.text + "\nvariable_sip_i_x_edge_transport: tls\n"
    text += f"variable_sip_i_x_edge_source: {quote('203.0.113.5:5061')}"
    invite = Invite.from_park(parse_event(text))  # type: ignore[arg-type]
    assert (invite.transport, invite.source) == ("tls", "203.0.113.5:5061")


def test_repeated_header_array_is_split() -> None:
    """X-Dup sent three times (recorded): FreeSWITCH's one ``ARRAY::a|:b|:c`` variable
    becomes three values in order; its ``sip_h_X-Dup-1``, ``-2`` variables are no headers."""
    park = recorded_park("inbound-digits-timeout.esl")
    assert "variable_sip_h_X-Dup-1: second" in park.text
    invite = Invite.from_park(park)
    assert invite.headers.getall("X-Dup") == ["first", "second", "third"]
    assert invite.header("x-dup") == "first"
    assert not [name for name in invite.headers if name.lower().startswith("x-dup-")]


def test_info_command_matches_recording() -> None:
    """The final intent command is byte for byte the recorded one."""
    sent = [
        f
        for d, f in load_recording(ESL_RECORDINGS, "inbound-park-call.esl")
        if b"uuid_send_info d7dd" in f
    ]
    body = encode_info({"intent": "Billing"}, final=True, max_bytes=16384)
    command = "api " + send_info_command("d7dd3510-57a3-4df3-9f7a-860475060edc", body)
    assert sent == [(command + "\n\n").encode()]


def test_info_escaping_as_in_the_fixtures() -> None:
    """Quotes and backslashes are escaped the way that reached the caller intact."""
    payload = {"event": "update", "text": 'it\'s a "quoted" test \\ with backslash', "n": 1}
    body = encode_info(payload, final=False, max_bytes=16384)
    assert send_info_command("u", body) == (
        "uuid_send_info u application json "
        '\'{"event": "update", "text": "it\\\'s a \\\\"quoted\\\\" test \\\\\\\\ with '
        'backslash", "n": 1}\''
    )


@pytest.mark.parametrize(
    ("payload", "final", "message"),
    [
        ({"final": False}, False, "'final' is reserved"),
        ({"n": float("nan")}, False, "not JSON-serialisable"),
        ({"s": "x" * 100}, False, "over the 64-byte limit"),
    ],
)
def test_bad_payloads_raise(payload: dict[str, object], final: bool, message: str) -> None:
    """Reserved 'final', non-JSON values and oversize bodies raise PayloadError."""
    with pytest.raises(PayloadError, match=message):
        encode_info(payload, final=final, max_bytes=64)


def test_finish_always_sets_final() -> None:
    """finish() bodies carry "final": true even if the bot said otherwise."""
    body = encode_info({"intent": "x", "final": False}, final=True, max_bytes=64)
    assert body.text == '{"intent": "x", "final": true}'
