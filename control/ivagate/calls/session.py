"""The live handle of one call: ``CallSession`` implements ``bots.base.Call`` (``answer``,
``play``, ``say``, ``collect_digits``, ``send_update``, ``finish``, ``hangup``) for bots and
the API alike, over the shared ESL client; the controller marks its end and runs its bot.

Three things here are written for CPU, each measured with ``python -m benchmarks controller``
(control/README.md, "Benchmark": "Fewer turns of the event loop and fewer tasks per call"):
the bot's flow runs in the call's own task (``run_bot``), an action is interrupted by
cancelling that task when the call ends (``_until_ended``), and the wait for RingCX's BYE is
a future and a timer (``wait_ended``). The ``uncancel()`` bookkeeping in the first two is
what running in the call's task costs: a cancellation is ours only when nothing else asked
for one too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from multidict import CIMultiDictProxy

from ivagate.bots.base import CallEnded, Outcome, PayloadError
from ivagate.esl import EslClient, EslCommandError
from ivagate.events import ChannelExecuteComplete
from ivagate.info import encode_info, send_info_command
from ivagate.invite import CallIdentity, Invite
from ivagate.log import CallLogger
from ivagate.media import AudioStream
from ivagate.media.endpoint import MediaEndpoint
from ivagate.metrics import Metrics
from ivagate.settings import CallSettings

from .records import CallRecord, EdgeReport, InfoRecord

__all__ = ["CallSession"]

T = TypeVar("T")

_DIGITS_VARIABLE = "ivagate_digits"
_SILENCE = "silence_stream://250"  # prompt/invalid-input file when the bot gives none
_CALL_ENDED = "the call ended"  # why mark_ended cancels a task waiting in _until_ended
_BOT_STOPPED = "the bot was stopped"  # why stop_bot cancels the task running the bot
_IDENTITY = tuple(f.name for f in fields(CallIdentity))  # what a record copies of the INVITE


class CallSession:
    """The live handle of one call (``bots.base.Call``), driven over the shared ESL client."""

    def __init__(
        self,
        invite: Invite,
        esl: EslClient,
        settings: CallSettings,
        log: CallLogger,
        metrics: Metrics,
        *,
        media: MediaEndpoint | None = None,
        report_timeout: float | None = None,
    ) -> None:
        self.invite = invite
        self.esl = esl
        self.settings = settings
        self.log = log
        self.metrics = metrics
        self.media = media
        self._stream: AudioStream | None = None  # open_stream(), until closed
        self.record = CallRecord(
            **{name: getattr(invite, name) for name in _IDENTITY}, started_at=time.time()
        )
        self._end_waiters: list[asyncio.Future[bool]] = []  # in wait_ended
        self._interruptible: set[asyncio.Task[Any]] = set()  # in _until_ended
        self._bot: asyncio.Task[Any] | None = None  # running the bot's flow (run_bot)
        self._bot_stopped = False
        self._bot_deadline: asyncio.TimerHandle | None = None
        self._info_lock = asyncio.Lock()  # one call's INFOs go out in order
        # edge reports (ivagate.edge_reports): seconds an INFO waits for its report before
        # the next may go; None: reports are off
        self._report_timeout = report_timeout
        self._report: asyncio.Future[EdgeReport | None] | None = None  # awaited by an INFO
        self._final: InfoRecord | None = None  # the final intent, once handed to FreeSWITCH
        self._last_cseq = -1  # of the last INFO reported: an older report is stale
        self._collecting = False
        self._failure: str | None = None
        self._hangup: tuple[str, bool] | None = None  # (cause, caller hung up) once ended

    # -- what the bot sees of the INVITE ----------------------------------------------

    @property
    def uuid(self) -> str:
        return self.invite.uuid

    @property
    def sip_call_id(self) -> str:
        return self.invite.sip_call_id

    @property
    def did(self) -> str:
        return self.invite.did

    @property
    def caller(self) -> str:
        return self.invite.caller

    @property
    def transport(self) -> str:
        return self.invite.transport

    @property
    def source(self) -> str:
        return self.invite.source

    @property
    def srtp(self) -> bool | None:
        return self.record.srtp

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.invite.headers

    @property
    def raw_headers(self) -> Mapping[str, str]:
        return self.invite.raw_headers

    @property
    def ended(self) -> bool:
        return self._hangup is not None

    @property
    def info_max_bytes(self) -> int:
        """The largest INFO body this call takes: ``call.udp_info_max_bytes`` when RingCX
        called over UDP (RFC 3261 18.1.1: a larger request belongs on TCP, and RingCX's
        calls stay on UDP), ``call.info_max_bytes`` otherwise."""
        if self.transport == "udp":
            return self.settings.udp_info_max_bytes
        return self.settings.info_max_bytes

    # -- bot actions -------------------------------------------------------------------

    async def answer(self) -> None:
        # bgapi: answering takes FreeSWITCH milliseconds that an ``api`` would hold the
        # shared connection for (see the recordings).
        reply = await self._until_ended(self.esl.bgapi(f"uuid_answer {self.uuid}"))
        if not reply.startswith("+OK"):
            raise EslCommandError(f"uuid_answer: {reply.strip()}")
        self.record.answered_at = time.time()

    async def open_stream(self, rate: int = 16000, encoding: str = "l16") -> AudioStream:
        if self.media is None:
            raise RuntimeError("this controller has no media endpoint (Controller.start)")
        if self._stream is not None and not self._stream.closed:
            raise RuntimeError("a stream is open on this call: close it first")
        self._stream = await self._until_ended(self.media.open(self.esl, self.uuid, rate, encoding))
        return self._stream

    async def play(self, source: str) -> None:
        await self._execute("playback", _one_word(source, "source"))

    async def say(self, text: str) -> None:
        await self._execute("speak", f"{self.settings.tts_engine}|{' '.join(text.split())}")

    async def collect_digits(
        self,
        max_digits: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the digit timeout FreeSWITCH applies
        prompt: str | None = None,
        terminators: str = "#",
    ) -> str:
        prompt = _SILENCE if prompt is None else _one_word(prompt, "prompt")
        args = (
            f"1 {max_digits} 1 {round(timeout * 1000)} {terminators or 'none'} "
            f"{prompt} {_SILENCE} {_DIGITS_VARIABLE} \\d+"
        )
        self._collecting = True
        try:
            done = await self._execute("play_and_get_digits", args)
        finally:
            self._collecting = False
        return done.variable(_DIGITS_VARIABLE)

    async def send_update(self, payload: Mapping[str, Any]) -> InfoRecord:
        return await self._send_info(payload, final=False)

    async def finish(self, payload: Mapping[str, Any]) -> InfoRecord:
        entry = await self._send_info(payload, final=True)
        if not self._final_delivered():
            # RingCX refused or never answered the final intent: it will not hang up (the
            # failure is noted with the answer, _await_report)
            await self.end("NORMAL_CLEARING")
            return entry
        if not await self.wait_ended(self.settings.final_bye_timeout):
            self.log.warning(
                "no BYE from RingCX %ss after the final intent; hanging up",
                self.settings.final_bye_timeout,
            )
            await self.end("NORMAL_CLEARING")
        return entry

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if self.ended:
            raise CallEnded(self.uuid)
        await self.end(cause)

    def count_failure(self, reason: str) -> None:
        self.metrics.bot_failures.labels(bot=self.record.bot or "", reason=reason).inc()

    # -- controller side ---------------------------------------------------------------

    @property
    def collecting(self) -> bool:
        """A ``collect_digits()`` is running: DTMF belongs to it, not to ``on_dtmf``."""
        return self._collecting

    def info_reported(self, report: EdgeReport) -> None:
        """The edge reported how RingCX answered an INFO of this call."""
        waiter = self._report
        if waiter is None or waiter.done() or report.cseq <= self._last_cseq:
            self.log.info(
                "late report of an INFO (CSeq %d): %s %d", report.cseq, report.end, report.status
            )
            return
        self._last_cseq = report.cseq
        waiter.set_result(report)

    def answered(self, srtp: bool) -> None:
        """FreeSWITCH answered the call (CHANNEL_ANSWER): whether its answer chose SRTP."""
        self.record.srtp = srtp

    def fail(self, reason: str) -> None:
        """Note why the call is failing (first reason wins); its outcome will be Failed."""
        if self._failure is None:
            self._failure = reason
            self.record.error = reason

    async def end(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up (BYE) unless the call is over; returns once the call has ended."""
        if self.ended:
            return
        reply = await self.esl.api(f"uuid_kill {self.uuid} {cause}")
        if not reply.startswith("+OK"):
            self.log.info("uuid_kill: %s", reply.strip())  # gone already: its event is due
        if not await self.wait_ended(self.esl.settings.reply_timeout):
            self.log.warning("no CHANNEL_HANGUP_COMPLETE after uuid_kill; taking the call as over")
            self.mark_ended("NO_HANGUP_EVENT", caller_hung_up=False)

    def mark_ended(self, hangup_cause: str, caller_hung_up: bool) -> None:
        """The channel is gone: settle the outcome and wake everything waiting on the call."""
        if self.ended:
            return
        record = self.record
        record.ended_at = time.time()
        record.hangup_cause = hangup_cause
        self._hangup = (hangup_cause, caller_hung_up)
        if self._stream is not None:
            self._stream.end(CallEnded(self.uuid))
        self._decide(hangup_cause, caller_hung_up)
        for task in self._interruptible:
            task.cancel(_CALL_ENDED)
        if self._bot is not None:
            # The bot's next call action raises CallEnded. A bot busy elsewhere gets as
            # long as RingCX gets for its BYE, then is stopped.
            loop = self._bot.get_loop()
            self._bot_deadline = loop.call_later(self.settings.final_bye_timeout, self.stop_bot)

    async def run_bot(self, flow: Coroutine[Any, Any, None]) -> BaseException | None:
        """Run the bot's flow in the calling task: what it raised, ``None`` if it returned,
        ``CancelledError`` if it was stopped (``stop_bot``, or overrunning the call's end).

        In the call's own task, not one of its own: a task per call less to start, wake
        and finish (``python -m benchmarks controller``).
        """
        task = asyncio.current_task()
        assert task is not None
        self._bot = task
        try:
            await flow
        except asyncio.CancelledError as stopped:
            if not self._bot_stopped or task.uncancel() > 0:  # cancelled for another reason too
                raise
            return stopped
        except Exception as error:
            return error
        finally:
            self._bot = None
            if self._bot_deadline is not None:
                self._bot_deadline.cancel()
        return None

    def stop_bot(self) -> None:
        """Stop the bot's flow, if one is running: ``run_bot`` returns."""
        if self._bot is not None and not self._bot_stopped:
            self._bot_stopped = True
            self._bot.cancel(_BOT_STOPPED)

    def _decide(self, hangup_cause: str, caller_hung_up: bool) -> None:
        """Settle the outcome and wake ``wait_ended``; while the final intent awaits its
        report (RingCX may hang up before the edge's report arrives) that report decides."""
        record = self.record
        final = self._final
        if final is not None and final.result is None and self._report_timeout is not None:
            return
        if self._final_delivered():
            record.outcome = Outcome.SUCCESS
        elif self._failure is None and caller_hung_up:
            record.outcome = Outcome.DISCONNECTED
        else:
            record.outcome = Outcome.FAILED
        # The call's one line at INFO (its start is logged at DEBUG): a record of the call.
        self.log.info(
            "call ended: %s (%s), %d INFOs; from %s to %s over %s, bot %s",
            record.outcome,
            hangup_cause,
            len(record.infos),
            record.caller,
            record.did,
            record.transport,
            record.bot,
            extra={"outcome": record.outcome},
        )
        for waiter in self._end_waiters:
            _settle(waiter, True)

    def _final_delivered(self) -> bool:
        """RingCX answered the final intent 2xx; with reports off, FreeSWITCH took it."""
        final = self._final
        if final is None:
            return False
        if self._report_timeout is None:
            return True
        return final.delivered

    async def wait_ended(self, within: float | None = None) -> bool:
        """Wait until the call has ended and its outcome is settled, or at most ``within``
        seconds: whether it has.

        A future and a timer: ``asyncio.timeout`` around an ``asyncio.Event`` cost several
        times as much, and every call waits like this for RingCX's BYE.
        """
        if self.record.outcome is not None:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        timer = None if within is None else loop.call_later(within, _settle, waiter, False)
        self._end_waiters.append(waiter)
        try:
            return await waiter
        finally:
            self._end_waiters.remove(waiter)
            if timer is not None:
                timer.cancel()

    # -- internals ---------------------------------------------------------------------

    async def _send_info(self, payload: Mapping[str, Any], *, final: bool) -> InfoRecord:
        try:
            body = encode_info(payload, final=final, max_bytes=self.info_max_bytes)
            if final and self.record.final_at is not None:
                raise PayloadError("the final intent was already sent")
        except Exception:
            self.metrics.info_failed.labels(reason="payload").inc()
            raise
        # The lock is held until RingCX's answer is reported (or edge.report_timeout): the
        # next INFO leaves after it, so UDP cannot reorder them.
        async with self._info_lock:
            if self.ended:
                self.metrics.info_failed.labels(reason="ended").inc()
                raise CallEnded(self.uuid)
            entry = InfoRecord(
                seq=len(self.record.infos) + 1, final=final, size=body.size, handed_at=time.time()
            )
            self.record.infos.append(entry)
            if final:
                # Set before the reply: RingCX may hang up before we read it.
                self.record.final_at = entry.handed_at
                self._final = entry
            if self._report_timeout is not None:
                # before the command: the report may overtake FreeSWITCH's reply
                self._report = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            try:
                # api, as the fixtures README prescribes: FreeSWITCH hands the INFO to its SIP
                # stack and replies at once (under a millisecond, recorded), so the reply is
                # one frame and no bgapi thread is made in FreeSWITCH for each INFO
                reply = await self.esl.api(send_info_command(self.uuid, body))
                entry.reply = reply.strip()
                self.metrics.info_handoff_seconds.observe(time.perf_counter() - started)
                if self._report is not None and entry.reply.startswith("+OK"):
                    await self._await_report(entry, self._report)
            except BaseException:
                self._final_lost(entry)
                raise
            finally:
                self._report = None
        if not entry.reply.startswith("+OK"):
            self._final_lost(entry)
            # FreeSWITCH answers "-ERR Operation Failed" when the channel is gone or dying
            # (recorded after the caller's BYE); the call is over for the bot.
            self.metrics.info_failed.labels(reason="rejected").inc()
            self.log.info("INFO %d not sent: %s", entry.seq, entry.reply)
            raise CallEnded(f"{self.uuid}: {entry.reply}")
        self.metrics.info_sent.inc()
        self.log.debug("INFO %d handed to FreeSWITCH (%d bytes)", entry.seq, body.size)
        return entry

    async def _await_report(
        self, entry: InfoRecord, waiter: asyncio.Future[EdgeReport | None]
    ) -> None:
        """Wait for the edge's report of ``entry`` (a future and a timer, as in
        ``wait_ended``), note it and count it; a final intent's report settles the outcome
        of a call RingCX has already hung up."""
        assert self._report_timeout is not None
        timer = waiter.get_loop().call_later(self._report_timeout, _settle_report, waiter)
        try:
            report = await waiter
        finally:
            timer.cancel()
        if report is None:
            entry.result = "no-report"
            entry.reason = f"no report from the edge within {self._report_timeout:g} s"
            self.metrics.info_answers.labels(status="no_report").inc()
        else:
            entry.reported(report)
            status = str(report.status) if report.end == "reply" else report.end.replace("-", "_")
            self.metrics.info_answers.labels(status=status).inc()
        if not entry.delivered:
            self.log.info("INFO %d: %s", entry.seq, entry.describe())
        if entry.final and not entry.delivered:
            self.fail(f"final intent: {entry.describe()}")
        if entry.final and self._hangup is not None:
            self._decide(*self._hangup)

    def _final_lost(self, entry: InfoRecord) -> None:
        """The final intent was not delivered after all: settle the outcome again."""
        if entry.final:
            self.record.final_at = None
            self._final = None
            if self._hangup is not None:
                self._decide(*self._hangup)

    async def _execute(self, app: str, arg: str) -> ChannelExecuteComplete:
        if self._stream is not None and not self._stream.closed:
            # FreeSWITCH would queue the application behind the stream's bridge
            raise RuntimeError(f"{app} while a stream is open: close the stream first")
        done = await self._until_ended(self.esl.execute(self.uuid, app, arg))
        if done.hangup_cause or self.ended:
            # the caller's BYE cut the application short; its CHANNEL_HANGUP_COMPLETE follows
            raise CallEnded(self.uuid)
        return done

    async def _until_ended(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` unless the call ends first (then ``CallEnded``).

        The end cancels the awaiting task (``mark_ended``) and the cancellation becomes
        ``CallEnded`` here: racing ``work`` in a task of its own against the end cost a
        task and an ``asyncio.wait`` per action.
        """
        if self.ended:
            work.close()
            raise CallEnded(self.uuid)
        task = asyncio.current_task()
        assert task is not None
        self._interruptible.add(task)
        try:
            return await work
        except asyncio.CancelledError:
            if not self.ended or task.uncancel() > 0:  # cancelled for another reason too
                raise
            raise CallEnded(self.uuid) from None
        finally:
            self._interruptible.discard(task)


def _settle(waiter: asyncio.Future[bool], ended: bool) -> None:
    if not waiter.done():
        waiter.set_result(ended)


def _settle_report(waiter: asyncio.Future[EdgeReport | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _one_word(value: str, what: str) -> str:
    # FreeSWITCH splits application arguments on spaces.
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be one word without spaces: {value!r}")
    return value
