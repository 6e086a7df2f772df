"""Telephone audio for the emulated caller: G.711 µ-law, tones, WAV files, and the measures
tests assert on (tone power by Goertzel, level in dBFS, spans of sound).

Samples are ``array('h')`` of 16-bit linear PCM; the call's rate is 8 kHz (PCMU/8000).
"""

from __future__ import annotations

import math
import sys
import wave
from array import array
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from itertools import chain, cycle
from pathlib import Path

__all__ = [
    "FRAME_SAMPLES",
    "HEARD_DBFS",
    "RATE",
    "active_spans",
    "play_frames",
    "read_wav",
    "rms_dbfs",
    "tone",
    "tone_power",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]

RATE = 8000
FRAME_SAMPLES = RATE // 50  # 20 ms
FULL_SCALE = 32768
HEARD_DBFS = -40.0  # a frame louder than this is sound, not silence or line noise
_BIAS = 0x84  # G.711 µ-law: added before finding the segment
_CLIP = 32635  # largest magnitude that still fits after the bias


def _ulaw_of(sample: int) -> int:
    mask = 0x7F if sample < 0 else 0xFF  # the sign bit, and every bit inverted
    magnitude = min(abs(sample), _CLIP) + _BIAS
    exponent = (magnitude >> 7).bit_length() - 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ((exponent << 4) | mantissa) ^ mask


def _linear_of(code: int) -> int:
    code ^= 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if code & 0x80 else magnitude


@cache
def _encode_table() -> bytes:
    """µ-law code of every 16-bit sample, indexed by the sample as unsigned."""
    return bytes(_ulaw_of(n - 65536 if n >= 32768 else n) for n in range(65536))


_DECODE = array("h", (_linear_of(code) for code in range(256)))


def ulaw_encode(samples: Iterable[int]) -> bytes:
    table = _encode_table()
    return bytes(table[s & 0xFFFF] for s in samples)


def ulaw_decode(payload: bytes) -> array[int]:
    return array("h", map(_DECODE.__getitem__, payload))


def tone(freq: float, seconds: float, dbfs: float = 0.0, rate: int = RATE) -> array[int]:
    """A sine at ``freq`` Hz, ``dbfs`` below full scale (0: peak at full scale)."""
    amplitude = (FULL_SCALE - 1) * 10 ** (dbfs / 20)
    step = 2 * math.pi * freq / rate
    return array("h", (round(amplitude * math.sin(step * n)) for n in range(int(seconds * rate))))


def read_wav(path: str | Path) -> array[int]:
    """A mono 16-bit WAV at 8 kHz, or 16 kHz downsampled by averaging sample pairs (no
    anti-alias filter: enough for speech and tones under 4 kHz)."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        if channels != 1 or width != 2 or rate not in (RATE, 2 * RATE):
            raise ValueError(
                f"{path}: need mono 16-bit 8 or 16 kHz, got {channels} channel(s), "
                f"{8 * width}-bit, {rate} Hz"
            )
        samples = array("h", wav.readframes(wav.getnframes()))
    if sys.byteorder == "big":  # WAV data is little-endian
        samples.byteswap()
    if rate == RATE:
        return samples
    return array("h", ((a + b) // 2 for a, b in zip(samples[::2], samples[1::2], strict=False)))


def write_wav(path: str | Path, samples: array[int], rate: int = RATE) -> None:
    """``samples`` as a mono 16-bit WAV."""
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.tobytes())


def play_frames(spec: str) -> Iterator[bytes]:
    """The µ-law payloads, 20 ms each and endless, of what a plan plays: ``silence``,
    ``tone:HZ``, ``tone:HZ:DBFS`` (integer Hz below 4000; DBFS 0 or below, default 0) or
    ``tone:HZ:DBFS:SECONDS`` (that long, then silence), or the path of a WAV file
    (``read_wav``), played once and followed by silence. ValueError names what is wrong with
    ``spec``."""
    silence = cycle([ulaw_encode([0] * FRAME_SAMPLES)])
    if spec == "silence":
        return silence
    kind, _, args = spec.partition(":")
    if kind != "tone":
        samples = read_wav(spec)
        samples.extend([0] * (-len(samples) % FRAME_SAMPLES))
        return chain(_frames(ulaw_encode(samples)), silence)
    freq, _, rest = args.partition(":")
    level, _, length = rest.partition(":")
    try:
        hz, dbfs, seconds = int(freq), float(level or 0), float(length or 0)
    except ValueError:
        raise ValueError(f"play: expected tone:HZ[:DBFS[:SECONDS]], not {spec!r}") from None
    if not 0 < hz < RATE // 2 or dbfs > 0 or seconds < 0:
        raise ValueError(
            f"play: tone needs 0 < HZ < {RATE // 2}, DBFS <= 0, SECONDS >= 0, not {spec!r}"
        )
    if seconds:  # a burst, then silence: something a bot can answer after the pause
        burst = tone(hz, seconds, dbfs)
        burst.extend([0] * (-len(burst) % FRAME_SAMPLES))
        return chain(_frames(ulaw_encode(burst)), silence)
    return cycle(_frames(ulaw_encode(tone(hz, 1.0, dbfs))))  # whole cycles in 1 s: no seam


def _frames(payload: bytes) -> list[bytes]:
    return [payload[i : i + FRAME_SAMPLES] for i in range(0, len(payload), FRAME_SAMPLES)]


def tone_power(samples: Sequence[int], rate: int, freq: float) -> float:
    """The share of the signal's energy at ``freq``: about 1 for a pure tone at ``freq``, about
    0 for another tone (100 Hz away or more) or silence. Goertzel over each 20 ms block, summed
    without phase, so gaps (lost or muted frames) between blocks do not cancel the tone out."""
    energy = math.fsum(s * s for s in samples)
    if not energy:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    block = rate // 50
    power = 0.0
    for start in range(0, len(samples), block):
        chunk = samples[start : start + block]
        prev = prev2 = 0.0
        for s in chunk:
            prev, prev2 = s + coeff * prev - prev2, prev
        power += 2 * (prev * prev + prev2 * prev2 - coeff * prev * prev2) / len(chunk)
    return min(1.0, power / energy)


def rms_dbfs(samples: Sequence[int]) -> float:
    """The level in dB below a full-scale square wave; -inf for digital silence."""
    if not samples:
        return -math.inf
    mean_square = math.fsum(s * s for s in samples) / len(samples)
    return 10 * math.log10(mean_square / FULL_SCALE**2) if mean_square else -math.inf


def active_spans(
    frames_with_times: Iterable[tuple[float, Sequence[int]]],
    threshold_dbfs: float = HEARD_DBFS,
    rate: int = RATE,
) -> list[tuple[float, float]]:
    """(start, end) of each run of consecutive frames louder than ``threshold_dbfs``. A
    frame's time is when it ended (a packet's arrival), so a run spans from its first
    frame's time minus that frame's duration to its last frame's time."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for at, samples in frames_with_times:
        if rms_dbfs(samples) > threshold_dbfs:
            if start is None:
                start = at - len(samples) / rate
            last = at
        elif start is not None:
            spans.append((start, last))
            start = None
    if start is not None:
        spans.append((start, last))
    return spans
