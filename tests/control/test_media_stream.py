"""``AudioStream``: the buffering between the bot and the media leg, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from ivagate.bots.base import CallEnded
from ivagate.media import AudioError, AudioStream, StreamClosed
from ivagate.media.stream import MARK_TICKS

FRAME = 640  # 20 ms at 16 kHz, 16-bit


def _stream(errors: list[AudioError] | None = None, **limits: float) -> AudioStream:
    async def closer() -> None:
        stream.end(StreamClosed("closed"))

    sink = errors if errors is not None else []
    stream = AudioStream(
        16000,
        inbound_frames=int(limits.get("inbound_frames", 3)),
        max_buffered_seconds=limits.get("max_buffered_seconds", 1.0),
        on_error=sink.append,
        closer=closer,
    )
    return stream


async def test_caller_frames_reach_the_iterator_in_order_and_a_slow_reader_loses_the_oldest() -> (
    None
):
    stream = _stream(inbound_frames=3)
    for n in range(5):
        stream.received(bytes([n]) * FRAME, n * 0.02, 100.0 + n)
    assert (stream.frames_in, stream.frames_dropped) == (5, 2)
    got = [await anext(stream) for _ in range(3)]
    assert [f.pcm[0] for f in got] == [2, 3, 4]
    assert [f.timestamp for f in got] == [0.04, 0.06, 0.08]


async def test_the_iterator_waits_for_a_frame_and_ends_with_the_stream() -> None:
    stream = _stream()
    reader = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)
    stream.received(b"\1" * FRAME, 0.0, 1.0)
    assert (await reader).pcm == b"\1" * FRAME
    rest = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)
    stream.end(StreamClosed("gone"))
    with pytest.raises(StopAsyncIteration):
        await rest


async def test_bot_audio_goes_out_a_frame_per_tick_with_the_tail_padded() -> None:
    stream = _stream()
    stream.play(b"\1\0" * (FRAME // 2) + b"\2\0" * 10)
    assert stream.next_frame() == b"\1\0" * (FRAME // 2)
    assert stream.next_frame() == b"\2\0" * 10 + b"\0" * (FRAME - 20)
    assert stream.next_frame() is None
    assert stream.frames_out == 2


async def test_a_mark_resolves_once_its_audio_has_played_out_not_when_it_was_sent() -> None:
    stream = _stream()
    stream.play(b"\0" * FRAME * 2)
    mark = stream.mark("end")
    stream.next_frame()
    stream.next_frame()  # the mark's last frame leaves: 20 ms to play, 20 in FreeSWITCH
    for _ in range(MARK_TICKS - 1):
        stream.next_frame()
        assert not mark.done()
    stream.next_frame()
    assert mark.result() is True


async def test_clear_drops_queued_audio_at_once_and_returns_pending_marks() -> None:
    stream = _stream()
    stream.play(b"\0" * FRAME * 10)
    first, second = stream.mark("a"), stream.mark("b")
    stream.next_frame()
    assert stream.clear() == ["a", "b"]
    assert stream.next_frame() is None
    assert (first.result(), second.result()) == (False, False)
    stream.play(b"\0" * FRAME)  # the stream goes on
    assert stream.next_frame() is not None


@pytest.mark.parametrize(
    ("pcm", "rate", "reason"),
    [
        (b"\0" * 3, None, "size"),
        (b"\0" * FRAME, 8000, "rate"),
        (b"\0" * FRAME * 51, None, "overflow"),
    ],
)
async def test_bad_bot_audio_is_refused_whole_and_counted(
    pcm: bytes, rate: int | None, reason: str
) -> None:
    errors: list[AudioError] = []
    stream = _stream(errors)
    with pytest.raises(AudioError) as refused:
        stream.play(pcm, rate)
    assert refused.value.reason == reason and [e.reason for e in errors] == [reason]
    assert stream.next_frame() is None  # nothing of it was queued


async def test_after_the_call_ended_every_action_says_so() -> None:
    stream = _stream()
    stream.play(b"\0" * FRAME)
    mark = stream.mark("m")
    stream.end(StreamClosed("the leg's BYE"))  # FreeSWITCH ends the leg first
    stream.end(CallEnded("uuid"))  # then the call's hangup event: its error wins
    assert mark.result() is False
    for action in (lambda: stream.play(b"\0\0"), stream.clear, lambda: stream.mark("x")):
        with pytest.raises(CallEnded):
            action()


async def test_a_pcmu_stream_takes_bytes_as_samples_and_pads_with_ulaw_silence() -> None:
    async def closer() -> None:
        return None

    stream = AudioStream(
        8000, "pcmu", inbound_frames=2, max_buffered_seconds=1, on_error=print, closer=closer
    )
    assert stream.frame_bytes == 160
    stream.play(b"\x01" * 3)  # odd lengths are whole u-law samples
    assert stream.next_frame() == b"\x01" * 3 + b"\xff" * 157


@pytest.mark.parametrize(("rate", "encoding"), [(16000, "pcmu"), (8000, "opus"), (44100, "l16")])
async def test_an_unknown_rate_or_encoding_is_refused(rate: int, encoding: str) -> None:
    async def closer() -> None:
        return None

    with pytest.raises(AudioError):
        AudioStream(
            rate, encoding, inbound_frames=1, max_buffered_seconds=1, on_error=print, closer=closer
        )
