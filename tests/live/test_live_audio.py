"""Live call audio (issue 13): the kit's caller -> real edge -> real FreeSWITCH -> controller
-> a bot's audio stream, and back. Assertions are on the audio itself: what the bot heard
(Goertzel), what the caller heard (energy over time, in wall-clock time)."""

from __future__ import annotations

from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from live_calls import call, voiced_seconds

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit.audio import read_wav, rms_dbfs, tone_power
from support import bots
from support.controller import record_of
from support.edge import Edge
from support.polling import until

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]


@pytest.mark.parametrize(("rate", "encoding"), [(8000, "l16"), (16000, "l16"), (8000, "pcmu")])
async def test_stream_opens_carries_frames_and_closes(
    edge: Edge, start_controller: StartController, rate: int, encoding: str
) -> None:
    options = {"wait_for_ack": True, "rate": rate, "encoding": encoding}
    controller = await start_controller(call={"bot_options": {"AudioSmoke": options}})
    report = await call(edge, "tls", headers={"X-Bot-Id": "AudioSmoke"})
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, bots.AudioSmoke.seen, report.render())
    assert bots.AudioSmoke.seen[:4] == [
        ("mark", True),
        ("frames", 50, {rate // 50 * (2 if encoding == "l16" else 1)}),
        ("closed", True),
        ("played after close", True),
    ]


@pytest.mark.parametrize(("transport", "rate"), [("tls", 16000), ("udp", 8000)])
async def test_the_bot_hears_the_callers_tone_and_the_caller_hears_the_bots_speech(
    edge: Edge,
    start_controller: StartController,
    speech: dict[int, Path],
    transport: str,
    rate: int,
) -> None:
    """Caller -> bot: the caller's 440 Hz tone, through SRTP on TLS, reaches the bot as
    PCM at the stream's rate (Goertzel). Bot -> caller: the bot's espeak-ng sentence reaches
    the caller with its voiced length kept, and the bot's mark resolves once the caller has
    heard it, not before."""
    reply = speech[rate]
    options = {"wait_for_ack": True, "rate": rate, "reply": str(reply)}
    controller = await start_controller(call={"bot_options": {"Listen": options}})
    report = await call(
        edge, transport, headers={"X-Bot-Id": "Listen"}, play="tone:440:-6", tones=[440]
    )
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, bots.Listen.seen, report.render())
    (_, heard), (_, played, marked_at) = bots.Listen.seen[:2]
    samples = array("h", heard)
    assert len(samples) == rate  # one second
    assert tone_power(samples, rate, 440) > 0.8
    assert -11 < rms_dbfs(samples) < -7  # the caller's sine peaks at -6 dBFS: -9 dB RMS
    assert tone_power(samples, rate, 1000) < 0.05

    media = report.media
    assert media is not None and media.srtp is (transport == "tls") and media.srtp_failures == 0
    expected = voiced_seconds(read_wav(reply), 8000)  # the caller hears 8 kHz
    assert abs(media.heard_seconds - expected) < 0.15 * expected, (media.heard_seconds, expected)
    last_heard = max(end for _, end in media.active_spans)
    assert played is True
    assert last_heard <= marked_at < last_heard + 0.1, (marked_at, last_heard)


async def test_clear_silences_the_caller_within_100_ms(
    edge: Edge, start_controller: StartController
) -> None:
    controller = await start_controller()
    report = await call(edge, "tls", headers={"X-Bot-Id": "BargeIn"}, tones=[1000])
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, report.render())
    ((_, cleared, cleared_at, played),) = bots.BargeIn.seen[:1]
    assert cleared == ["tone"] and played is False
    media = report.media
    assert media is not None and media.tone_power[1000] > 0.8
    spans = media.active_spans
    assert spans, report.render()
    assert cleared_at - 0.2 < max(end for _, end in spans) <= cleared_at + 0.1, (spans, cleared_at)
    assert 0.8 < media.heard_seconds < 1.2


@pytest.mark.parametrize("mode", ["rfc2833", "info"])
async def test_dtmf_reaches_the_bot_while_its_stream_is_open_and_hangup_ends_the_stream(
    edge: Edge, start_controller: StartController, mode: str
) -> None:
    """The caller presses keys (RTP events or SIP INFO) during the stream, then hangs up:
    the bot's on_dtmf gets them, its frame loop ends, and the next action says the call
    is over."""
    controller = await start_controller()
    report = await call(
        edge, "udp", headers={"X-Bot-Id": "StreamUntilHangup"}, dtmf="12", dtmf_mode=mode, bye=3.0
    )
    record = await record_of(controller, report)
    assert record.outcome is Outcome.DISCONNECTED, record
    await until(lambda: len(bots.StreamUntilHangup.seen) == 5, "the bot's on_hangup ran")
    assert bots.StreamUntilHangup.seen == [
        ("dtmf", "1"),
        ("dtmf", "2"),
        ("stream ended", True),
        ("play", "CallEnded"),
        ("hangup", Outcome.DISCONNECTED),
    ]


async def test_the_parrot_repeats_what_the_caller_said_after_a_pause(
    edge: Edge, start_controller: StartController, speech: dict[int, Path]
) -> None:
    """The built-in parrot bot (the README's example): the caller says a sentence
    (espeak-ng) then keeps quiet; the parrot says it back once the caller paused, and with
    ``turns`` 1 sends the final intent."""
    controller = await start_controller(call={"bot_options": {"parrot": {"turns": 1}}})
    said = speech[8000]
    report = await call(edge, "tls", headers={"X-Bot-Id": "parrot"}, play=str(said))
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, report.render())
    assert [i.json for i in report.infos] == [
        {"event": "listening"},
        {"intent": "Parrot", "turns": 1, "final": True},
    ]
    media = report.media
    assert media is not None
    expected = voiced_seconds(read_wav(said), 8000)
    assert abs(media.heard_seconds - expected) < 0.2 * expected, (media.heard_seconds, expected)
    assert media.first_sent_at is not None
    heard_from = min(start for start, _ in media.active_spans)
    # it spoke after the caller's sentence and the parrot's 0.6 s pause, not over it
    assert heard_from > media.first_sent_at + len(read_wav(said)) / 8000 + 0.5


async def test_a_bot_that_stops_reading_or_writes_bad_audio_loses_frames_not_the_call(
    edge: Edge, start_controller: StartController
) -> None:
    """Unread caller frames are dropped (the newest half second kept) and counted; audio of
    the wrong size or rate is refused with a clear error and counted; the call goes on to
    its final intent."""
    controller = await start_controller()
    report = await call(edge, "tls", headers={"X-Bot-Id": "BadAudio"}, play="tone:440:-6")
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, report.render())
    refused, wrong_rate, (_, dropped) = bots.BadAudio.seen[:3]
    assert refused[:2] == ("refused", "size") and "whole number of samples" in refused[2]
    assert wrong_rate[:2] == ("refused", "rate") and "8000 Hz on a 16000 Hz stream" in wrong_rate[2]
    assert dropped > 25  # 1.5 s is 75 frames; 25 are kept
    metrics = {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for family in controller.metrics.registry.collect()
        for m in family.samples
    }
    assert metrics["ivagate_audio_frames_total", (("direction", "dropped"),)] == dropped
    assert metrics["ivagate_audio_errors_total", (("reason", "size"),)] == 1
    assert metrics["ivagate_audio_errors_total", (("reason", "rate"),)] == 1
    assert metrics["ivagate_audio_streams_total", ()] == 1


async def test_the_bots_hangup_ends_its_stream_and_the_callers_audio(
    edge: Edge, start_controller: StartController
) -> None:
    controller = await start_controller()
    report = await call(edge, "udp", headers={"X-Bot-Id": "HangupMidStream"}, tones=[1000])
    record = await record_of(controller, report)
    assert record.outcome is Outcome.FAILED  # hung up without a final intent
    assert report.bye_from_remote
    seen = bots.HangupMidStream.seen
    await until(lambda: ("hangup", Outcome.FAILED) in seen, "the bot's flow ended")
    # the flow's two entries, then on_hangup's
    assert [entry[0] for entry in seen] == ["frames after hangup", "closed", "hangup"], seen
    (_, unread), closed, _ = seen
    assert unread <= 25 and closed == ("closed", True)  # media.inbound_frames at most
    media = report.media
    assert media is not None and media.tone_power[1000] > 0.8
    assert 0.3 < media.heard_seconds < 0.8, media.heard_seconds


async def test_a_leg_freeswitch_ends_alone_ends_the_stream_not_the_call(
    edge: Edge, start_controller: StartController
) -> None:
    """FreeSWITCH hangs the stream's leg up while the call goes on: the bot's stream ends
    with ``StreamClosed`` and the call, back in park, plays the bot's tone and ends on its
    final intent."""
    controller = await start_controller()
    report = await call(edge, "udp", headers={"X-Bot-Id": "LegLost"}, tones=[440])
    record = await record_of(controller, report)
    assert record.outcome is Outcome.SUCCESS, (record, bots.LegLost.seen, report.render())
    assert bots.LegLost.seen[0] == ("stream ended", "StreamClosed")
    assert report.media is not None and report.media.tone_power[440] > 0.8
