"""The bot plug-in contract.

A bot is a class registered by name (entry point group ``ivagate.bots`` or ``module:Class`` in
the ``call.bots`` setting). The controller makes one instance per call and calls its hooks,
named after the call events they take:

* ``on_call_start(call)``: the bot's flow; the call is parked and not yet answered.
  Returning without ``finish()`` or ``hangup()`` ends the call as Failed (no final intent).
  **Answer within ``call.answer_deadline`` seconds (default 4) of the call's arrival**: the
  caller is waiting on the INVITE, and the edge gives a media node ``MEDIA_ANSWER_TIMEOUT``
  (5 s) before it cancels the call and runs it again on another node. So at the deadline the
  controller fails the call itself, once: the caller gets 480, the call ends Failed, and the
  bot's late ``answer()`` (or any other call action) raises ``CallEnded``. Do slow set-up
  (a session with your platform) after ``answer()``, while playing something, or ahead of
  calls in something the per-call instances share (the constructor runs within the deadline).
* ``on_dtmf(call, digit)``: a DTMF digit arrived outside ``collect_digits()``.
* ``on_hangup(call, outcome)``: the call is over; clean up. No call methods work any more.

An exception escaping a hook ends the call as Failed with its traceback logged; it never
reaches the controller. To hand control back early, call ``call.hangup()`` or raise
``StopBot``. A bot's options are its ``call.bot_options`` entry; ``check_options`` lets the
controller refuse bad ones at start-up (and ``ivagate check-config``), not in a call.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol

from multidict import CIMultiDictProxy
from pydantic import StringConstraints

from ivagate.media.stream import AudioError, AudioFrame, AudioStream, StreamClosed

if TYPE_CHECKING:
    from ivagate.calls.records import InfoRecord

__all__ = [
    "AudioError",
    "AudioFrame",
    "AudioStream",
    "Bot",
    "Call",
    "CallEnded",
    "HangupCause",
    "Outcome",
    "PayloadError",
    "StopBot",
    "StreamClosed",
]


# A FreeSWITCH hangup cause name (``NORMAL_CLEARING``, ``USER_BUSY`` ...): one safe word,
# for ``Call.hangup`` from outside the process (the webhook bot, the HTTP API).
HangupCause = Annotated[str, StringConstraints(pattern=r"^[A-Z_]{1,64}$")]


class Outcome(enum.StrEnum):
    """How a call ended, named as RingCX names its paths."""

    SUCCESS = "Success"  # final intent delivered, RingCX hung up (or our BYE after the timeout)
    FAILED = "Failed"  # bot error, timeout, no final intent, lost media node connection
    DISCONNECTED = "Disconnected"  # the caller hung up before the final intent


class PayloadError(ValueError):
    """A bot payload that cannot be sent: not JSON-serialisable, too large, or uses ``final``.

    The call goes on; only this update was refused.
    """


class CallEnded(RuntimeError):
    """The call is over (caller hung up, or it was ended); the action was not carried out."""


class StopBot(Exception):  # a signal, not an error: no Error suffix
    """Raised by a bot to stop its flow; the call ends as its state says (see ``Outcome``)."""


class Call(Protocol):
    """What a bot sees of one call. Every coroutine raises ``CallEnded`` once the call is over."""

    @property
    def uuid(self) -> str:
        """FreeSWITCH channel UUID."""

    @property
    def sip_call_id(self) -> str:
        """SIP Call-ID of the INVITE, as Kamailio logs it."""

    @property
    def did(self) -> str:
        """Request-URI user part."""

    @property
    def caller(self) -> str:
        """Caller ID number (From user)."""

    @property
    def transport(self) -> str:
        """How RingCX reached the edge: ``udp``, ``tcp`` or ``tls`` (``X-Edge-Transport``)."""

    @property
    def source(self) -> str:
        """RingCX's address as the edge saw it, ``ip:port`` (``X-Edge-Source``)."""

    @property
    def srtp(self) -> bool | None:
        """Whether FreeSWITCH's answer negotiated SRTP (RTP/SAVP); ``None`` until the call
        is answered (set by the time ``answer()`` returns)."""

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Every INVITE header, decoded, case-insensitive, repeated headers kept."""

    @property
    def raw_headers(self) -> Mapping[str, str]:
        """The ``sip_i_*`` channel variables as FreeSWITCH gave them (URL-encoded)."""

    async def answer(self) -> None:
        """Answer the call (200 OK with FreeSWITCH's SDP answer); raises ``CallEnded`` after
        ``call.answer_deadline``, when the call has already failed with 480."""

    async def open_stream(self, rate: int = 16000, encoding: str = "l16") -> AudioStream:
        """Open the call's live audio at ``rate`` (8000 or 16000) in ``encoding`` (``l16``:
        16-bit little-endian PCM; ``pcmu``: G.711 u-law, 8000 only): iterate the caller's 20 ms
        frames (``async for frame in stream``), ``play(pcm)`` the bot's audio (paced out in
        real time), ``mark(name)``, ``clear()`` (barge-in), ``close()``. DTMF still comes to
        ``on_dtmf``; ``send_update``/``finish`` work as before. While it is open,
        ``play``/``say``/``collect_digits`` raise ``RuntimeError``. Raises
        ``StreamClosed`` if FreeSWITCH could not place the stream within
        ``media.open_timeout``. A stream FreeSWITCH ends while the call goes on ends with
        ``StreamClosed`` (``stream.error``); the call's end, with ``CallEnded``."""

    async def play(self, source: str) -> None:
        """Play a file path or a ``tone_stream://`` and wait for it to end."""

    async def say(self, text: str) -> None:
        """Speak ``text`` with the configured TTS engine and wait for it to end."""

    async def collect_digits(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the digit timeout FreeSWITCH applies
        prompt: str | None = None,
        terminators: str = "#",
    ) -> str:
        """Play ``prompt`` (optional) and collect DTMF; ``""`` when nothing came in time."""

    @property
    def info_max_bytes(self) -> int:
        """The largest INFO body this call takes: smaller when RingCX called over UDP."""

    async def send_update(self, payload: Mapping[str, Any]) -> InfoRecord:
        """Send ``payload`` to RingCX as a SIP INFO (``application/json``), in order; returns
        once RingCX answered it (the edge reports the answer: ``sip_status``, ``result``,
        ``latency``), or after ``edge.report_timeout``. One INFO at a time: the next leaves
        after this one's answer.

        Raises ``PayloadError`` (not JSON, over ``info_max_bytes``, or has ``final``).
        """

    async def finish(self, payload: Mapping[str, Any]) -> InfoRecord:
        """Send the final intent (``"final": true`` added) and return once the call is over,
        with RingCX's answer to it. Answered 2xx: waits for RingCX's BYE (after
        ``call.final_bye_timeout`` seconds without it, the controller hangs up) and the call
        ends as Success. Refused (4xx-6xx), unanswered or unreported: the controller hangs up
        at once and the call ends as Failed, the answer in its ``error``.
        """

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up now (BYE to RingCX)."""

    def count_failure(self, reason: str) -> None:
        """Count a failure of the bot's own service (``reason``: one short word, from a
        fixed set) in ``ivagate_bot_failures_total{bot, reason}``."""


class Bot:
    """Base class of bots. Subclass it, set ``name`` and override the hooks you need."""

    name: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming what is wrong with ``options``; the default takes any."""

    async def on_call_start(self, call: Call) -> None:
        """The bot's flow. The default rejects nothing and does nothing: override it."""

    async def on_dtmf(self, call: Call, digit: str) -> None:
        """A DTMF digit that no ``collect_digits()`` was waiting for."""

    async def on_hangup(self, call: Call, outcome: Outcome) -> None:
        """The call is over; release what the bot holds."""
