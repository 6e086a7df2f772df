"""One call's live audio as the bot sees it: the caller's frames in, the bot's audio out.

``AudioStream`` holds no socket: the RTP leg (``rtp.py``) feeds it the caller's frames and the
pacer (``pacer.py``) takes the bot's audio from it a frame per 20 ms tick. So the bot's side
never waits on the network and the network's side never waits on the bot: caller frames the
bot has not read are kept up to ``media.inbound_frames`` (then the oldest go, counted), bot
audio up to ``media.max_buffered_seconds`` (then ``play`` refuses it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["ENCODINGS", "FRAME_SECONDS", "AudioError", "AudioFrame", "AudioStream", "StreamClosed"]

FRAME_SECONDS = 0.02  # one RTP packet, one frame: 20 ms
# Ticks from a mark's last frame leaving to the mark resolving: the frame's own 20 ms, and
# the 20 ms FreeSWITCH holds a frame between the legs (measured on 1.10.12: with one tick the
# caller heard the last frame 0-6 ms *before* the mark resolved).
MARK_TICKS = 2


@dataclass(frozen=True)
class Encoding:
    """How a stream's samples are written; FreeSWITCH's core converts to and from the call's."""

    codec: str  # FreeSWITCH's and the SDP's name
    rates: tuple[int, ...]
    sample_bytes: int
    silence: bytes  # the byte silence is made of


ENCODINGS = {
    # 16-bit linear PCM, little-endian (the machine's order) toward the bot
    "l16": Encoding("L16", (8000, 16000), 2, b"\0"),
    # G.711 u-law, 8 kHz: what telephony WebSocket protocols carry, with no work in Python
    "pcmu": Encoding("PCMU", (8000,), 1, b"\xff"),
}


class AudioError(ValueError):
    """Audio the stream cannot take (odd length, other rate, buffer full); nothing of it was
    queued and the stream goes on."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # the label of ivagate_audio_errors_total


class StreamClosed(RuntimeError):
    """The stream was closed (``close()``) while the call goes on."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """20 ms of the caller's audio in the stream's encoding and rate."""

    pcm: bytes
    timestamp: float  # media time, seconds since the stream's first frame (RTP clock)
    received_at: float  # time.monotonic() when it arrived from FreeSWITCH


class AudioStream:
    """The caller's audio (``async for frame in stream``) and the bot's (``play``, ``mark``,
    ``clear``) of one call, at ``rate`` (8000 or 16000) in ``encoding`` (``l16`` or, at
    8000 only, ``pcmu``)."""

    def __init__(
        self,
        rate: int,
        encoding: str = "l16",
        *,
        inbound_frames: int,
        max_buffered_seconds: float,
        on_error: Callable[[AudioError], None],
        closer: Callable[[], Awaitable[None]],
    ) -> None:
        if encoding not in ENCODINGS:
            raise AudioError("encoding", f"encoding must be one of {sorted(ENCODINGS)}")
        self.encoding = ENCODINGS[encoding]
        if rate not in self.encoding.rates:
            raise AudioError(
                "rate", f"{encoding} streams run at {self.encoding.rates}, not {rate!r}"
            )
        self.rate = rate
        self.frame_bytes = round(rate * FRAME_SECONDS) * self.encoding.sample_bytes
        self._max_buffered = round(max_buffered_seconds / FRAME_SECONDS) * self.frame_bytes
        self._on_error = on_error
        self._closer = closer
        self._inbound: deque[AudioFrame] = deque(maxlen=inbound_frames)
        self._reader: asyncio.Future[None] | None = None  # a bot waiting in __anext__
        self._outbound = bytearray()
        self._queued = 0  # bytes ever queued by play(); marks are positions in it
        self._sent = 0  # bytes taken by the pacer
        self._marks: deque[tuple[int, str, asyncio.Future[bool]]] = deque()
        # marks reached, by how many ticks until they resolve (the first: this tick)
        self._due: deque[list[asyncio.Future[bool]]] = deque([] for _ in range(MARK_TICKS))
        self._ended: Exception | None = None
        self.frames_in = 0
        self.frames_dropped = 0  # caller frames the bot did not read in time
        self.frames_lost = 0  # caller frames that never arrived (RTP sequence gaps)
        self.frames_out = 0

    # -- the bot's side ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ended is not None

    @property
    def error(self) -> Exception | None:
        """Why the stream ended, what its actions raise now (``CallEnded``: the call is
        over; ``StreamClosed``); ``None`` while it is open."""
        return self._ended

    @property
    def playing(self) -> bool:
        """The bot's audio is queued or its last frame is playing out."""
        return bool(self._outbound or self._marks or any(self._due))

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> AudioFrame:
        while not self._inbound:
            if self._ended is not None:
                raise StopAsyncIteration
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._inbound.popleft()

    def play(self, pcm: bytes, rate: int | None = None) -> None:
        """Queue ``pcm`` (samples in the stream's encoding at its rate, any length) to be
        paced out after what is queued; returns at once."""
        self._check_open()
        if rate is not None and rate != self.rate:
            self._refuse("rate", f"audio at {rate} Hz on a {self.rate} Hz stream")
        if len(pcm) % self.encoding.sample_bytes:
            self._refuse("size", f"{len(pcm)} bytes is not a whole number of samples")
        if len(self._outbound) + len(pcm) > self._max_buffered:
            self._refuse("overflow", "more bot audio than media.max_buffered_seconds unplayed")
        self._outbound += pcm
        self._queued += len(pcm)

    def mark(self, name: str) -> asyncio.Future[bool]:
        """A future for the point after everything queued so far: ``True`` once that audio
        has played out, ``False`` if ``clear()`` or the end of the stream came first."""
        self._check_open()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._sent >= self._queued:
            self._due[-1].append(done)
        else:
            self._marks.append((self._queued, name, done))
        return done

    def clear(self) -> list[str]:
        """Stop the bot's audio at once (barge-in): drop what is queued; the names of the
        marks that will not be reached (their futures give ``False``)."""
        self._check_open()
        self._queued = self._sent
        self._outbound.clear()
        return self._drop_marks()

    async def close(self) -> None:
        """End the stream (the call goes on; ``play``/``say`` work again)."""
        if self._ended is None:
            await self._closer()

    # -- the media side ----------------------------------------------------------------

    def received(self, pcm: bytes, timestamp: float, received_at: float) -> None:
        """A caller frame from FreeSWITCH."""
        if len(self._inbound) == self._inbound.maxlen:
            self.frames_dropped += 1  # the deque drops the oldest
        self._inbound.append(AudioFrame(pcm, timestamp, received_at))
        self.frames_in += 1
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def next_frame(self) -> bytes | None:
        """The pacer's tick: the bot's next 20 ms (a short tail padded with silence), or
        ``None`` when nothing is queued. Marks whose audio went out ``MARK_TICKS`` ticks ago
        resolve now: the caller has heard it."""
        _resolve(self._due.popleft())
        self._due.append([])
        if not self._outbound:
            return None
        frame = bytes(self._outbound[: self.frame_bytes])
        del self._outbound[: self.frame_bytes]
        self._sent += len(frame)
        while self._marks and self._marks[0][0] <= self._sent:
            self._due[-1].append(self._marks.popleft()[2])
        self.frames_out += 1
        return frame.ljust(self.frame_bytes, self.encoding.silence)

    def end(self, error: Exception) -> None:
        """The leg is gone: the iterator stops, bot actions raise ``error``. The call's end
        may come after (the stream was closed, or FreeSWITCH ended the leg alone): its error
        wins."""
        if self._ended is not None:
            if isinstance(self._ended, StreamClosed):
                self._ended = error
            return
        self._ended = error
        self._outbound.clear()
        self._drop_marks()
        for due in self._due:
            _resolve(due)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended is not None:
            raise self._ended

    def _refuse(self, reason: str, detail: str) -> None:
        error = AudioError(reason, detail)
        self._on_error(error)
        raise error

    def _drop_marks(self) -> list[str]:
        names = []
        for _, name, done in self._marks:
            names.append(name)
            if not done.done():
                done.set_result(False)
        self._marks.clear()
        return names


def _resolve(marks: list[asyncio.Future[bool]]) -> None:
    for done in marks:
        if not done.done():
            done.set_result(True)
