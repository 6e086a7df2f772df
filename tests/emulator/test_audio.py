"""The kit's audio: G.711 µ-law, tones, WAV files, and the measures tests assert on."""

from __future__ import annotations

import math
import wave
from array import array
from itertools import islice
from pathlib import Path

import pytest

from ivagate_kit.audio import (
    FRAME_SAMPLES,
    active_spans,
    play_frames,
    read_wav,
    rms_dbfs,
    tone,
    tone_power,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)


def test_ulaw_matches_the_g711_table() -> None:
    """Known codes: zero is 0xFF, full scale 0x80 / 0x00 (decoded +-32124), and a small
    sample in the first segment; both zeros (0xFF, 0x7F) decode to 0."""
    assert ulaw_encode([0, 32767, -32768, 100, -100]) == bytes([0xFF, 0x80, 0x00, 0xF2, 0x72])
    assert list(ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF2, 0x72]))) == [
        0,
        0,
        32124,
        -32124,
        104,
        -104,
    ]


def test_ulaw_round_trip_keeps_every_code_and_stays_within_its_step() -> None:
    """Each code decodes to a value that encodes back to the same code (but -0), and any
    sample comes back within half a segment step (at most 512 at the top)."""
    codes = bytes(c for c in range(256) if c != 0x7F)
    assert ulaw_encode(ulaw_decode(codes)) == codes
    samples = array("h", range(-32768, 32768, 7))
    errors = [abs(a - b) for a, b in zip(samples, ulaw_decode(ulaw_encode(samples)), strict=True)]
    assert max(errors) <= 1024


def test_goertzel_finds_440_in_a_440_tone_and_not_in_1000() -> None:
    """Share of energy: ~1 at the tone's frequency, ~0 elsewhere and in silence; a mix of two
    tones at equal level gives each about half; through µ-law the tone stays."""
    a440, a1000 = tone(440, 1.0), tone(1000, 1.0)
    assert tone_power(a440, 8000, 440) > 0.99
    assert tone_power(a1000, 8000, 440) < 0.01
    assert tone_power(array("h", [0] * 8000), 8000, 440) == 0.0
    mix = array("h", ((a + b) // 2 for a, b in zip(a440, a1000, strict=True)))
    assert 0.4 < tone_power(mix, 8000, 440) < 0.6
    assert tone_power(ulaw_decode(ulaw_encode(a440)), 8000, 440) > 0.99


def test_levels_in_dbfs() -> None:
    """A full-scale sine is -3 dBFS, one at -20 dB peak -23 dBFS; silence is -inf."""
    assert rms_dbfs(tone(1000, 0.1)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(tone(1000, 0.1, dbfs=-20)) == pytest.approx(-23.01, abs=0.05)
    assert rms_dbfs([0] * 160) == -math.inf


def test_active_spans_of_a_made_up_signal() -> None:
    """Frames stamped when they ended: two runs of sound (-10 and -30 dBFS) separated by
    silence and a -50 dBFS murmur give two spans; each starts one frame before its first
    frame's time."""
    loud, soft = tone(440, 0.02, -10), tone(440, 0.02, -30)
    quiet, silent = tone(440, 0.02, -50), array("h", [0] * FRAME_SAMPLES)
    signal = [silent, loud, loud, quiet, silent, soft, soft, soft]
    frames = [(100.0 + 0.02 * (n + 1), samples) for n, samples in enumerate(signal)]
    spans = active_spans(frames)
    assert spans == [pytest.approx((100.02, 100.06)), pytest.approx((100.10, 100.16))]
    assert active_spans(frames, threshold_dbfs=-20) == [pytest.approx((100.02, 100.06))]


def test_wav_round_trip_and_16_khz_input(tmp_path: Path) -> None:
    """8 kHz is read as written; 16 kHz is halved (pairs averaged) and keeps its tone;
    stereo is refused."""
    samples = tone(440, 0.5, -6)
    write_wav(tmp_path / "a.wav", samples)
    assert read_wav(tmp_path / "a.wav") == samples
    write_wav(tmp_path / "b.wav", tone(440, 0.5, -6, rate=16000), rate=16000)
    halved = read_wav(tmp_path / "b.wav")
    assert len(halved) == 4000 and tone_power(halved, 8000, 440) > 0.99
    with wave.open(str(tmp_path / "c.wav"), "wb") as stereo:
        stereo.setnchannels(2)
        stereo.setsampwidth(2)
        stereo.setframerate(8000)
        stereo.writeframes(bytes(8))
    with pytest.raises(ValueError, match="mono"):
        read_wav(tmp_path / "c.wav")


def test_what_a_plan_plays(tmp_path: Path) -> None:
    """Silence is µ-law zeros; a tone is endless at its level; a WAV is played once, its last
    frame padded, then silence."""
    silence = bytes([0xFF] * FRAME_SAMPLES)
    assert list(islice(play_frames("silence"), 3)) == [silence] * 3
    heard = ulaw_decode(b"".join(islice(play_frames("tone:1000:-12"), 100)))
    assert tone_power(heard, 8000, 1000) > 0.99
    assert rms_dbfs(heard) == pytest.approx(-15, abs=0.2)
    write_wav(tmp_path / "a.wav", tone(440, 0.03))
    frames = list(islice(play_frames(str(tmp_path / "a.wav")), 4))
    assert [len(f) for f in frames] == [FRAME_SAMPLES] * 4
    assert frames[0] != silence and frames[1][-1] == 0xFF and frames[2:] == [silence] * 2
    burst = list(islice(play_frames("tone:440:-6:0.1"), 7))  # five frames of tone, then quiet
    assert all(f != silence for f in burst[:5]) and burst[5:] == [silence] * 2
    for bad in ("tone:abc", "tone:0", "tone:440:3", "tone:5000", "tone:440:-6:-1"):
        with pytest.raises(ValueError):
            play_frames(bad)
