"""DTMF from the emulator: RFC 4733 event packets, INFO per key, and the plans that allow them."""

from __future__ import annotations

import asyncio
import struct

import pytest

from ivagate_kit import CallPlan, run_call
from ivagate_kit.audio import play_frames
from ivagate_kit.dtmf import event_packets
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.rtp import RtpSession
from ivagate_kit.sdp import Sdp
from ivagate_kit.sipmsg import SipMessage


def _fields(packet: bytes) -> tuple[bool, int, int, int, int, bool, int]:
    """marker, payload type, seq, timestamp, event, end bit, duration."""
    first, second, seq, timestamp, _ssrc, event, flags, duration = struct.unpack(
        "!BBHIIBBH", packet
    )
    assert first == 0x80 and len(packet) == 16  # RTP version 2, 12-byte header, 4-byte event
    return bool(second & 0x80), second & 0x7F, seq, timestamp, event, bool(flags & 0x80), duration


def test_one_key_press_is_rfc_4733_packets() -> None:
    """'#' (event 11) for 100 ms: marker first, duration growing by 20 ms (160 samples), one
    timestamp, the end packet sent three times, sequence numbers wrapping at 16 bits."""
    packets = [_fields(p) for p in event_packets("#", 101, 65534, 1000, 7)]
    assert [p[0] for p in packets] == [True] + [False] * 6
    assert {(p[1], p[3], p[4]) for p in packets} == {(101, 1000, 11)}
    assert [p[2] for p in packets] == [65534, 65535, 0, 1, 2, 3, 4]
    assert [(p[5], p[6]) for p in packets] == [
        (False, 160),
        (False, 320),
        (False, 480),
        (False, 640),
        (True, 800),
        (True, 800),
        (True, 800),
    ]


async def test_keys_go_in_the_audio_stream_from_its_advertised_port() -> None:
    """Two keys reach the answer's address from the port the offer names, in the audio's
    stream: one SSRC and sequence, one timestamp per key, no audio while a key is down."""
    loop = asyncio.get_running_loop()
    received: list[tuple[bytes, tuple[str, int]]] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append((data, addr))

    sink, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    session = await RtpSession.bind("127.0.0.1")
    try:
        session.open(sink.get_extra_info("sockname"), None, None)
        session.play(play_frames("silence"))
        await session.press("12", 96)
    finally:
        session.close()
        sink.close()
    assert {addr[1] for _, addr in received} == {session.port}
    assert len({data[8:12] for data, _ in received}) == 1  # one SSRC
    seqs = [struct.unpack_from("!H", data, 2)[0] for data, _ in received]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(len(seqs)))
    kinds = ["event" if data[1] & 0x7F == 96 else "audio" for data, _ in received]
    first, last = kinds.index("event"), len(kinds) - 1 - kinds[::-1].index("event")
    assert kinds[first : first + 7] == ["event"] * 7 and kinds[last - 6 : last + 1] == ["event"] * 7
    assert kinds[first + 7 : last - 6] == ["audio"] * 5  # the 100 ms between the keys
    packets = [_fields(data) for data, _ in received if data[1] & 0x7F == 96]
    assert [p[4] for p in packets] == [1] * 7 + [2] * 7
    assert len({p[3] for p in packets}) == 2


def test_answer_names_its_telephone_event_payload_type(recorded_messages: list[bytes]) -> None:
    """The payload type of telephone-event and the media address come from the answer."""
    answer = Sdp.parse(SipMessage.parse(recorded_messages[1]).body)
    assert answer.event_type == 101
    assert answer.host == "127.0.0.1" and answer.port > 0


async def test_info_dtmf_is_one_dtmf_relay_info_per_key() -> None:
    """--dtmf-mode info: an in-dialog INFO application/dtmf-relay per key, each answered."""
    async with MediaNode(transport="udp", script=NodeScript(infos=[])) as node:
        plan = CallPlan(
            f"127.0.0.1:{node.port}", "udp", dtmf="5#", dtmf_mode="info", dtmf_delay=0, bye=0.5
        )
        report = await run_call(plan)
    assert report.ok, report.render()
    infos = [r for r in node.requests if r.method == "INFO"]
    assert [(r.content_type, r.body) for r in infos] == [
        ("application/dtmf-relay", "Signal=5\r\nDuration=100\r\n"),
        ("application/dtmf-relay", "Signal=#\r\nDuration=100\r\n"),
    ]
    assert [c.name for c in report.checks if "DTMF" in c.name] == [
        "DTMF INFO '5' answered 200",
        "DTMF INFO '#' answered 200",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"dtmf": "12x"},
        {"dtmf": "1", "dtmf_mode": "inband"},
        {"dtmf": "1", "dtmf_delay": -1},
        {"dtmf": "1", "media": False},  # RFC 2833 goes in the RTP stream
    ],
)
def test_dtmf_plan_is_checked(bad: dict[str, object]) -> None:
    """Unknown keys or modes, a negative delay, RFC 2833 without media: ValueError."""
    with pytest.raises(ValueError):
        CallPlan("127.0.0.1:5060", **bad)  # type: ignore[arg-type]
    assert CallPlan("127.0.0.1:5060", "tls", dtmf="1").dtmf == "1"  # SRTP carries events too
    assert CallPlan("127.0.0.1:5060", dtmf="1", dtmf_mode="info", media=False).dtmf == "1"
