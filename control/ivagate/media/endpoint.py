"""Live call audio on a media node: how a stream is opened, paced and counted.

A stream is a second call leg. The controller asks FreeSWITCH to ``bridge`` the caller to
``sofia/<media.profile>/sip:<stream id>@<media.host>:<media.port>`` (a profile bound to
loopback, freeswitch/sip_profiles/media.xml) with L16 at the stream's rate as the only codec;
``SipAnswerer`` answers that INVITE with the RTP socket of the stream's ``RtpLeg``. FreeSWITCH
keeps SRTP, G.711 and its timing toward RingCX and resamples; Python sees PCM.
Closing the stream hangs the leg up (``uuid_kill``): the bridge returns and the call goes on,
parked. The bridge's return (``CHANNEL_EXECUTE_COMPLETE``) ends every stream the bot did not
close, not the leg's BYE: the event says whether the call is ending (its ``Hangup-Cause``; the
bot gets ``CallEnded``) or FreeSWITCH ended the leg alone (``StreamClosed``; the call goes on).

One pacer task ticks every 20 ms for all streams (absolute deadlines, no drift) and sends each
stream's next frame: one timer for the node instead of one per stream.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ivagate.bots.base import CallEnded
from ivagate.esl import EslClient, EslError
from ivagate.events import ChannelExecuteComplete
from ivagate.metrics import Metrics
from ivagate.settings import MediaSettings

from .rtp import RtpLeg
from .sip import LegOffer, SipAnswerer
from .stream import FRAME_SECONDS, AudioError, AudioStream, StreamClosed

__all__ = ["MediaEndpoint"]

log = logging.getLogger(__name__)

_CATCH_UP = 5  # ticks the pacer sends late after a stall of the event loop; then it skips


@dataclass
class _Leg:
    rtp: RtpLeg
    answered: asyncio.Future[None]


class MediaEndpoint(Collector):
    """The stream legs of one controller; also the collector of their ``/metrics``."""

    def __init__(self, settings: MediaSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._sip: SipAnswerer | None = None
        self._legs: dict[str, _Leg] = {}
        self._pacer: asyncio.Task[None] | None = None
        # totals of ended streams; the open ones are added when /metrics is read
        self._frames = Tally[str]()
        self._errors = Tally[str]()
        self._opened = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, self._sip = await loop.create_datagram_endpoint(
            lambda: SipAnswerer(self.settings.host, self._answer),
            local_addr=(self.settings.host, self.settings.port),
        )

    async def close(self) -> None:
        for stream_id in list(self._legs):
            self._end(stream_id, StreamClosed("the controller stopped"))
        if self._sip is not None and self._sip.transport is not None:
            self._sip.transport.close()

    async def open(
        self, esl: EslClient, call_uuid: str, rate: int, encoding: str = "l16"
    ) -> AudioStream:
        """Bridge call ``call_uuid`` to a new stream leg and return its stream once
        FreeSWITCH placed the leg; ``AudioError`` for a bad rate, ``StreamClosed`` when
        the leg did not come up within ``media.open_timeout``."""
        assert self._sip is not None, "start() first"
        stream_id = secrets.token_hex(8)
        leg_uuid = str(uuid.uuid4())
        bridge: asyncio.Task[ChannelExecuteComplete] | None = None

        async def close() -> None:
            # ended first: the bridge's return that follows is then ours (no warning)
            self._end(stream_id, StreamClosed("the stream was closed"))
            try:
                await esl.api(f"uuid_kill {leg_uuid}")
            except EslError as exc:
                log.info("stream %s: uuid_kill: %s", stream_id, exc)
            if bridge is not None:  # back in park: the call takes applications again
                await asyncio.wait({bridge}, timeout=esl.settings.reply_timeout)

        stream = AudioStream(
            rate,
            encoding,
            inbound_frames=self.settings.inbound_frames,
            max_buffered_seconds=self.settings.max_buffered_seconds,
            on_error=self._count_error,
            closer=close,
        )
        rtp = await RtpLeg.bind(self.settings.host, stream)
        leg = _Leg(rtp, asyncio.get_running_loop().create_future())
        self._legs[stream_id] = leg
        self._opened += 1
        bridge = asyncio.create_task(
            esl.execute(call_uuid, "bridge", self._dial(stream_id, leg_uuid, stream))
        )
        bridge.add_done_callback(lambda done: self._bridged(stream_id, call_uuid, done))
        placed: set[asyncio.Future[Any]] = {leg.answered, bridge}
        await asyncio.wait(
            placed,
            timeout=self.settings.open_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not leg.answered.done():
            late = not bridge.done()  # else the bridge failed at once
            await close()
            why = f"{self.settings.open_timeout:g} s passed" if late else "its bridge failed"
            raise StreamClosed(f"FreeSWITCH did not place the stream's leg: {why}")
        if self._pacer is None:
            self._pacer = asyncio.create_task(self._pace())
        return stream

    # -- SIP ---------------------------------------------------------------------------

    def _dial(self, stream_id: str, leg_uuid: str, stream: AudioStream) -> str:
        codec = f"{stream.encoding.codec}@{stream.rate}h@20i"
        variables = f"origination_uuid={leg_uuid},absolute_codec_string={codec}"
        s = self.settings
        assert self._sip is not None
        return f"{{{variables}}}sofia/{s.profile}/sip:{stream_id}@{s.host}:{self._sip.port}"

    def _answer(self, stream_id: str, offer: LegOffer) -> tuple[int, int] | None:
        leg = self._legs.get(stream_id)
        if leg is None:
            log.warning("stream leg INVITE for unknown stream %s: refused", stream_id)
            return None
        rtp = leg.rtp
        wanted = f"{rtp.stream.encoding.codec}/{rtp.stream.rate}"
        payload_type = offer.payload_type(wanted)
        if payload_type is None or not offer.port:
            log.warning("stream %s: FreeSWITCH offered no %s", stream_id, wanted)
            return None
        rtp.payload_type = payload_type
        rtp.remote = (offer.host, offer.port)
        if not leg.answered.done():
            leg.answered.set_result(None)
        return rtp.port, payload_type

    def _bridged(
        self, stream_id: str, call_uuid: str, bridge: asyncio.Task[ChannelExecuteComplete]
    ) -> None:
        """The call's ``bridge`` returned: the leg is over (a no-op after ``close()``)."""
        error = None if bridge.cancelled() else bridge.exception()
        if error is not None:
            log.warning("stream %s: bridge failed: %s", stream_id, error)
        elif stream_id in self._legs and not bridge.result().hangup_cause:
            log.warning("stream %s: the bridge returned, the call goes on without it", stream_id)
            self._end(stream_id, StreamClosed("FreeSWITCH ended the stream's leg"))
            return
        self._end(stream_id, CallEnded(f"{call_uuid}: the call ended the audio stream"))

    def _end(self, stream_id: str, error: Exception) -> None:
        leg = self._legs.pop(stream_id, None)
        if leg is None:
            return
        stream = leg.rtp.stream
        stream.end(error)
        leg.rtp.close()
        self._frames.update(
            {
                "in": stream.frames_in,
                "out": stream.frames_out,
                "dropped": stream.frames_dropped,
                "lost": stream.frames_lost,
            }
        )

    # -- pacing ------------------------------------------------------------------------

    async def _pace(self) -> None:
        """Tick every 20 ms while any stream is open, on absolute deadlines."""
        loop = asyncio.get_running_loop()
        start, index = loop.time(), 0
        try:
            while self._legs:
                index += 1
                late = loop.time() - (start + index * FRAME_SECONDS)
                if late < 0:
                    await asyncio.sleep(-late)
                    late = loop.time() - (start + index * FRAME_SECONDS)
                elif late > _CATCH_UP * FRAME_SECONDS:  # a long stall: skip, do not burst
                    index += int(late / FRAME_SECONDS)
                self.metrics.audio_tick_late.observe(late)
                for leg in list(self._legs.values()):
                    leg.rtp.tick(index)
        finally:
            self._pacer = None

    # -- metrics -----------------------------------------------------------------------

    def _count_error(self, error: AudioError) -> None:
        self._errors[error.reason] += 1

    def collect(self) -> Iterator[Metric]:
        streams = [leg.rtp.stream for leg in self._legs.values()]
        opened = CounterMetricFamily("ivagate_audio_streams", "Audio streams opened")
        opened.add_metric([], self._opened)
        active = GaugeMetricFamily("ivagate_audio_streams_active", "Audio streams open now")
        active.add_metric([], len(streams))
        frames = CounterMetricFamily(
            "ivagate_audio_frames",
            "20 ms frames: in (caller to bot), out (bot to caller), dropped (caller frames "
            "a bot did not read in time), lost (caller frames that never arrived from "
            "FreeSWITCH: RTP sequence gaps)",
            labels=["direction"],
        )
        live = {
            "in": sum(s.frames_in for s in streams),
            "out": sum(s.frames_out for s in streams),
            "dropped": sum(s.frames_dropped for s in streams),
            "lost": sum(s.frames_lost for s in streams),
        }
        for direction, count in live.items():
            frames.add_metric([direction], self._frames[direction] + count)
        errors = CounterMetricFamily(
            "ivagate_audio_errors",
            "Bot audio refused, by reason: size (not whole samples), rate, overflow",
            labels=["reason"],
        )
        for reason in ("size", "rate", "overflow"):
            errors.add_metric([reason], self._errors[reason])
        yield from (opened, active, frames, errors)
