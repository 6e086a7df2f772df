"""The caller's RTP session: pacing, SRTP with SDES keys, what is heard and counted, and whole
calls with audio against the stand-in media node (which echoes it)."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivagate_kit import CallPlan, run_call
from ivagate_kit.audio import FRAME_SAMPLES, play_frames, read_wav, tone_power, ulaw_encode
from ivagate_kit.cli import main
from ivagate_kit.media_node import MediaNode, NodeScript
from ivagate_kit.rtp import RtpSession
from ivagate_kit.sdp import Sdp, build_answer, build_offer
from support.polling import until

HOST = "127.0.0.1"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RtpSession, RtpSession]]:
    a, b = await RtpSession.bind(HOST), await RtpSession.bind(HOST)
    yield a, b
    a.close()
    b.close()


def _open(a: RtpSession, b: RtpSession, srtp: bool, wrong_key: bool = False) -> None:
    """As offer/answer sets them up: a offers (its key), b answers (its own key)."""
    offer = Sdp.parse(build_offer(HOST, a.port, srtp))
    answer = Sdp.parse(build_answer(build_offer(HOST, a.port, srtp), HOST, b.port))
    other = Sdp.parse(build_offer(HOST, a.port, srtp))  # a key a never uses
    a.open((HOST, b.port), offer.srtp_key, answer.srtp_key)
    b.open((HOST, a.port), answer.srtp_key, (other if wrong_key else offer).srtp_key)


async def _until(condition: Callable[[], bool], what: str) -> None:
    await until(condition, what, within=5.0)


async def test_frames_are_paced_by_deadline(pair: tuple[RtpSession, RtpSession]) -> None:
    """Frame n leaves at start + n * 20 ms, so the schedule does not drift: the earliest
    arrivals (less n * 20 ms) of the last 15 frames of 75 are as early as those of the first
    15 (pacing by the time since the last frame falls a frame behind in a second or so); all
    arrive, in sequence."""
    a, b = pair
    _open(a, b, srtp=False)
    a.play(play_frames("silence"))
    await _until(lambda: len(b.frames) >= 75, "75 frames")
    frames = b.frames[:75]
    offsets = [f.at - 0.02 * ((f.seq - frames[0].seq) & 0xFFFF) for f in frames]
    assert abs(min(offsets[-15:]) - min(offsets[:15])) < 0.01
    assert [f.seq for f in frames] == [(frames[0].seq + n) & 0xFFFF for n in range(75)]
    assert b.lost == b.out_of_order == 0


@pytest.mark.parametrize("srtp", [True, False])
async def test_two_sessions_hear_each_other(
    pair: tuple[RtpSession, RtpSession], srtp: bool
) -> None:
    """With the SDES keys of offer and answer, each side hears the other's tone, decoded; over
    SRTP no packet fails authentication."""
    a, b = pair
    _open(a, b, srtp)
    a.play(play_frames("tone:440"))
    b.play(play_frames("tone:1000:-6"))
    await _until(lambda: len(a.frames) >= 25 and len(b.frames) >= 25, "half a second each way")
    heard_by_b, heard_by_a = b.report([440, 1000]), a.report([440, 1000])
    assert heard_by_b.tone_power[440] > 0.95 and heard_by_b.tone_power[1000] < 0.05
    assert heard_by_a.tone_power[1000] > 0.95 and heard_by_a.tone_power[440] < 0.05
    assert heard_by_a.srtp is heard_by_b.srtp is srtp
    assert heard_by_b.srtp_failures == 0 and heard_by_b.heard_seconds > 0.4
    assert [len(f.pcm) for f in b.frames[:3]] == [FRAME_SAMPLES] * 3


async def test_wrong_key_fails_authentication(pair: tuple[RtpSession, RtpSession]) -> None:
    """A receiver with another key than the sender's: every packet counted as an SRTP
    failure, nothing decoded or heard."""
    a, b = pair
    _open(a, b, srtp=True, wrong_key=True)
    a.play(play_frames("tone:440"))
    await _until(lambda: b.srtp_failures >= 10, "ten packets refused")
    report = b.report([440])
    assert report.frames == [] and report.packets_received == 0
    assert report.heard_seconds == 0 and report.tone_power == {440: 0.0}


async def test_arrivals_are_counted_by_sequence(pair: tuple[RtpSession, RtpSession]) -> None:
    """Gaps are lost packets until the late ones come (out of order); other payload types
    (PCMA) are counted but not decoded; RTCP is neither."""
    a, b = pair
    a.open((HOST, b.port), None, None)
    assert a.transport is not None

    def packet(seq: int, payload_type: int = 0) -> bytes:
        return struct.pack("!BBHII", 0x80, payload_type, seq, seq * 160, 99) + ulaw_encode(
            [1000] * FRAME_SAMPLES
        )

    for seq in (65534, 65535, 2, 3, 1, 4):
        a.transport.sendto(packet(seq), (HOST, a.port))
    a.transport.sendto(packet(5, payload_type=8), (HOST, a.port))
    a.transport.sendto(bytes([0x80, 200]) + bytes(26), (HOST, a.port))  # an RTCP sender report
    await _until(lambda: a.received == 7, "seven RTP packets")
    await asyncio.sleep(0.05)
    assert (a.received, a.lost, a.out_of_order) == (7, 1, 1)  # 0 never came, 1 came late
    assert [f.seq for f in a.frames] == [65534, 65535, 2, 3, 1, 4]


async def test_call_hears_its_tone_echoed_over_srtp(tmp_path: Path) -> None:
    """A TLS call (SDES-SRTP) playing 440 Hz to the stand-in, which echoes it: the report
    hears 440 and not 1000, over SRTP, for about as long as the call; keys pressed in the
    same stream; the recording holds the tone."""
    record = tmp_path / "heard.wav"
    async with MediaNode(transport="tls", script=NodeScript(infos=[])) as node:
        plan = CallPlan(
            f"{HOST}:{node.port}",
            "tls",
            play="tone:440:-10",
            record=str(record),
            tones=[440, 1000],
            dtmf="5",
            dtmf_delay=0.2,
            bye=1.0,
            ping_interval=0,
        )
        report = await run_call(plan)
    assert report.ok, report.render()
    media = report.media
    assert media is not None and media.srtp and media.srtp_failures == 0
    assert media.tone_power[440] > 0.95 and media.tone_power[1000] < 0.05
    assert 0.6 < media.heard_seconds <= 1.1 and media.packets_received > 40
    assert media.first_sent_at is not None  # wall clock, as the spans
    assert abs(media.active_spans[0][0] - media.first_sent_at) < 0.1
    heard = read_wav(record)
    assert len(heard) == FRAME_SAMPLES * len(media.frames) and tone_power(heard, 8000, 440) > 0.95


async def test_silence_flows_and_the_report_shows_media(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """By default the caller sends silence all call long (a phone sends RTP continuously):
    received back, heard as nothing; the JSON report's media section has no frames."""
    async with MediaNode(transport="udp", script=NodeScript(infos=[])) as node:
        code = await asyncio.to_thread(
            main,
            [f"{HOST}:{node.port}", "-t", "udp", "--bye", "0.5", "--json", "--tone-power", "1000"],
        )
    assert code == 0
    media = json.loads(capsys.readouterr().out)["media"]
    assert media["packets_sent"] > 15 and media["packets_received"] > 15
    assert media["heard_seconds"] == 0 and media["active_spans"] == []
    assert media["tone_power"] == {"1000": 0.0} and "frames" not in media and not media["srtp"]


async def test_no_media_sends_no_rtp() -> None:
    """``media=False``: signalling only, the report has no media section."""
    async with MediaNode(transport="udp", script=NodeScript(infos=[])) as node:
        report = await run_call(CallPlan(f"{HOST}:{node.port}", "udp", media=False, bye=0.1))
    assert report.ok and report.media is None


@pytest.mark.parametrize(
    "bad", [{"play": "tone:x"}, {"play": "/nonexistent.wav"}, {"tones": [0]}, {"tones": [4000]}]
)
def test_media_plan_is_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CallPlan("127.0.0.1:5060", **bad)  # type: ignore[arg-type]
