"""The controller: takes each parked call, runs its bot, keeps the node's ready gate.

Public surface (the HTTP API, ``ivagate run`` and the benchmark build on it)::

    controller = Controller(settings, EslClient(settings.esl))   # esl defaults to that
    await controller.start()      # connects in the background, reconnects with backoff
    controller.connected          # the Event Socket connection is up
    controller.ready              # connected, not draining, ivagate_ready=true on FreeSWITCH
    controller.draining
    controller.calls              # ivagate.calls.registry.CallRegistry (get / all / active)
    controller.bots               # ivagate.bots.registry.BotRegistry
    controller.metrics            # ivagate.metrics.Metrics (its registry is GET /metrics)
    controller.edge_reports       # ivagate.edge_reports.EdgeReports: RingCX's INFO answers
    controller.media              # ivagate.media.MediaEndpoint: the calls' live audio streams
    await controller.drain()      # ivagate_ready=false: new calls get 503 from the dialplan
    await controller.wait_idle()  # returns once no call is active
    await controller.stop()       # drain, let calls finish (call.drain_timeout), end the rest

Life of a call: CHANNEL_PARK -> route (header, DID, default bot if set; none -> ``respond
404`` without answering) -> ``bot.on_call_start(call)`` in the call's task (not answered
within ``call.answer_deadline``: the call ends with cause NO_ANSWER, SIP 480, and Failed, so
that the edge, whose own answer timer would CANCEL it and run it again on another node,
passes that one failure to RingCX) -> the bot finishes
(final intent, then RingCX's BYE, or ours after ``call.final_bye_timeout``) or fails
(exception, returns without a final intent: we hang up, outcome Failed) -> ``bot.on_hangup``
-> the call moves to the registry's ended list.

Failover: the dialplan takes a call only while ``ivagate_ready`` is ``true`` and the lease
``ivagate_ready_until`` (microseconds since the epoch) lies ahead of FreeSWITCH's clock.
``ivagate_ready`` is set true only while connected and not draining (false drains the node);
the lease is renewed every ``esl.ready_refresh`` seconds to ``esl.ready_lease`` from now, so a
controller that dies without a word (kill -9) leaves a node that answers 503 at once after
at most ``esl.ready_lease`` seconds, instead of parking calls nobody takes. The lease uses this
host's clock: the Event Socket is loopback-only, so FreeSWITCH reads the same one. When the Event
Socket drops, every active call's bot is stopped (nothing can be sent); once the connection
is back the controller lists FreeSWITCH's channels, hangs up those calls that still exist and
records them all as Failed, then sets the gate again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from .bots.base import Bot, CallEnded, StopBot
from .bots.registry import BotRegistry
from .calls.registry import CallRegistry
from .calls.session import CallSession
from .edge_reports import EdgeReports
from .esl import EslClient, EslError
from .events import ChannelAnswer, ChannelHangupComplete, ChannelPark, Dtmf, EslEvent
from .invite import Invite
from .log import CallLogger
from .media.endpoint import MediaEndpoint
from .metrics import Metrics
from .routing import choose_bot
from .settings import Settings

__all__ = ["Controller"]

log = logging.getLogger(__name__)

CONNECTION_LOST = "Event Socket connection lost"


class Controller:
    def __init__(self, settings: Settings, esl: EslClient | None = None) -> None:
        self.settings = settings
        self.esl = esl or EslClient(settings.esl)
        self.bots = BotRegistry(settings.call.bots, settings.call.bot_options)
        self.calls = CallRegistry(settings.call.keep_ended)
        self.metrics = Metrics()
        # read when /metrics is scraped: exact, and nothing to keep up to date per call
        self.metrics.active_calls.set_function(self.calls.active_count)
        self.edge_reports = EdgeReports(settings.edge, self.calls, self.metrics)
        self.media = MediaEndpoint(settings.media, self.metrics)
        self.metrics.registry.register(self.media)
        self._ready = False
        self._draining = False
        self._bots: dict[str, Bot] = {}
        self._orphans: list[CallSession] = []  # active when the connection dropped
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- state -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.esl.connected

    @property
    def ready(self) -> bool:
        return self._ready and self.esl.connected and not self._draining

    @property
    def draining(self) -> bool:
        return self._draining

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load every bot and check the options of those configured or routed to (a broken
        one fails here), then connect in the background."""
        self.bots.load_all(self.settings.routing.routed_bots())
        await self.edge_reports.start()
        await self.media.start()
        await self.esl.start(self)
        self._spawn(self._renew_lease())

    async def drain(self) -> None:
        """Take no new calls (the dialplan answers 503); active calls go on."""
        self._draining = True
        if self.esl.connected:
            await self._set_ready(False)
        log.info("draining: %d active calls", self.calls.active_count())

    async def wait_idle(self) -> None:
        """Wait until no call is active."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Orderly shutdown: drain, give calls ``call.drain_timeout``, end the rest, close."""
        await self.drain()
        try:
            await asyncio.wait_for(self.wait_idle(), self.settings.call.drain_timeout)
        except TimeoutError:
            remaining = self.calls.active()
            log.warning("ending %d calls still active after the drain timeout", len(remaining))
            for call in remaining:
                call.fail("controller shut down")
            await asyncio.gather(*(self._end(call) for call in remaining))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.esl.close()
        await self.edge_reports.close()
        await self.media.close()
        self.metrics.ready.set(0)

    # -- Event Socket listener (called on the loop, in wire order) ----------------------

    def esl_connected(self) -> None:
        self.metrics.esl_connected.set(1)
        self._spawn(self._resume())

    def esl_disconnected(self) -> None:
        self._ready = False
        self.metrics.esl_connected.set(0)
        self.metrics.ready.set(0)
        for call in self.calls.active():
            if call.ended:
                continue
            call.fail(CONNECTION_LOST)
            self._orphans.append(call)
            call.stop_bot()

    def esl_event(self, event: EslEvent) -> None:
        if isinstance(event, ChannelPark):
            if event.uuid and event.uuid not in self.calls:
                self._take(event)
            return
        call = self.calls.get(event.uuid) if event.uuid else None
        if call is None or call.ended:
            return
        if isinstance(event, ChannelHangupComplete):
            call.mark_ended(event.hangup_cause, event.disposition.startswith("recv_"))
        elif isinstance(event, ChannelAnswer):
            call.answered(event.srtp)
        elif isinstance(event, Dtmf) and not call.collecting and call.uuid in self._bots:
            self._spawn(self._dtmf(call, self._bots[call.uuid], event.digit))

    # -- calls -------------------------------------------------------------------------

    def _take(self, park: ChannelPark) -> None:
        invite = Invite.from_park(park)
        call_log = CallLogger(log, invite.uuid, invite.sip_call_id)
        call = CallSession(
            invite,
            self.esl,
            self.settings.call,
            call_log,
            self.metrics,
            media=self.media,
            report_timeout=self.settings.edge.report_timeout if self.edge_reports.enabled else None,
        )
        self.calls.add(call)
        self._idle.clear()
        # Without it FreeSWITCH answers +OK to uuid_send_info and sends nothing (fixtures).
        info_enabled = invite.variable("fs_send_unsupported_info") == "true"
        # from here, not from when the bot starts: the edge's answer timer is already running
        deadline = asyncio.get_running_loop().call_later(
            self.settings.call.answer_deadline, self._answer_overdue, call
        )
        self._spawn(self._run(call, info_enabled, deadline))

    async def _run(
        self, call: CallSession, info_enabled: bool, deadline: asyncio.TimerHandle
    ) -> None:
        route = choose_bot(call.invite, self.settings.routing, self.bots)
        call.record.bot = route.bot
        # DEBUG: at INFO a call has one line, when it ends (CallSession), with all of this
        call.log.debug(
            "call from %s to %s over %s: bot %s (%s)",
            call.caller,
            call.did,
            call.transport,
            route.bot,
            route.reason,
        )
        try:
            if route.bot is None:
                await self._reject(call, route.reason)
                return
            if not info_enabled:
                call.log.warning("the dialplan did not set fs_send_unsupported_info; setting it")
                await self.esl.api(f"uuid_setvar {call.uuid} fs_send_unsupported_info true")
            await self._drive(call, self.bots.create(route.bot))
        except Exception as exc:  # a bot that cannot be made, a lost connection: end as Failed
            # (after an EslError the reconnect lists the channels and ends the call)
            call.log.warning("call setup failed: %s", exc, exc_info=not isinstance(exc, EslError))
            call.fail(f"call setup failed: {exc}")
            await self._end(call)
            await call.wait_ended()
        finally:
            deadline.cancel()
            self._bots.pop(call.uuid, None)
            self.calls.retire(call)
            if call.record.outcome is not None:
                self.metrics.calls_ended[call.record.outcome].inc()
            if not self.calls.active_count():
                self._idle.set()

    def _answer_overdue(self, call: CallSession) -> None:
        """The bot has not answered within ``call.answer_deadline``: fail the call with 480
        (a 4xx the edge relays, where a 5xx or its own timeout would run the call again on
        another node). An answer already on its way may still win; the call then ends."""
        if call.ended or call.record.srtp is not None or call.record.answered_at is not None:
            return
        deadline = self.settings.call.answer_deadline
        call.log.warning("the bot did not answer within %ss: failing the call with 480", deadline)
        call.fail(f"not answered within call.answer_deadline ({deadline:g} s)")
        self._spawn(self._end(call, "NO_ANSWER"))  # FreeSWITCH's 480 Temporarily Unavailable

    async def _reject(self, call: CallSession, reason: str) -> None:
        call.fail(f"rejected with 404: {reason}")
        try:
            await self.esl.execute(call.uuid, "respond", "404 Not Found")
        except EslError as exc:
            call.log.warning("respond 404 failed: %s", exc)
        await call.wait_ended()

    async def _drive(self, call: CallSession, bot: Bot) -> None:
        self._bots[call.uuid] = bot
        self._settle(call, await call.run_bot(bot.on_call_start(call)))
        if not call.ended:
            if call.record.final_at is not None:  # StopBot after the final intent
                await call.wait_ended(self.settings.call.final_bye_timeout)
            await self._end(call)
        await call.wait_ended()
        assert call.record.outcome is not None
        try:
            await bot.on_hangup(call, call.record.outcome)
        except Exception:
            call.log.exception("bot's on_hangup raised")

    def _settle(self, call: CallSession, error: BaseException | None) -> None:
        """Turn how the bot's flow ended (``CallSession.run_bot``) into the call's failure
        reason, if any."""
        if isinstance(error, asyncio.CancelledError):
            call.fail("bot stopped: it did not return after the call ended")
        elif error is None:
            if call.record.final_at is None:
                call.fail("bot returned without a final intent")
        elif isinstance(error, CallEnded):
            pass  # the channel is going: its hangup event tells who ended it
        elif isinstance(error, StopBot):
            if call.record.final_at is None:
                call.fail("bot stopped without a final intent")
        else:
            call.log.error("bot raised %r", error, exc_info=error)
            call.fail(f"bot error: {error!r}")

    async def _dtmf(self, call: CallSession, bot: Bot, digit: str) -> None:
        try:
            await bot.on_dtmf(call, digit)
        except CallEnded:
            pass
        except Exception as error:
            call.log.error("bot's on_dtmf raised %r", error, exc_info=error)
            call.fail(f"bot error: {error!r}")
            await self._end(call)

    async def _end(self, call: CallSession, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up unless the connection is gone (then the reconnect cleans up)."""
        if not self.esl.connected:
            return
        try:
            await call.end(cause)
        except EslError as exc:
            call.log.warning("hangup failed: %s", exc)

    # -- connection --------------------------------------------------------------------

    async def _resume(self) -> None:
        """After (re)connecting: end the calls the outage orphaned, then open the gate."""
        try:
            if self._orphans:
                await self._end_orphans()
            await self._set_ready(not self._draining)
        except EslError as exc:
            log.warning("could not resume after connecting: %s", exc)

    async def _end_orphans(self) -> None:
        listing = json.loads(await self.esl.api("show channels as json") or "{}")
        alive = {row.get("uuid") for row in listing.get("rows") or ()}
        orphans, self._orphans = self._orphans, []
        log.warning(
            "ending %d calls left by the lost connection (%d still on FreeSWITCH)",
            len(orphans),
            sum(call.uuid in alive for call in orphans),
        )
        for call in orphans:
            if call.uuid in alive:
                await call.end()
            call.mark_ended("ESL_CONNECTION_LOST", caller_hung_up=False)

    async def _set_ready(self, ready: bool) -> None:
        value = "true" if ready else "false"
        if ready:
            await self._extend_lease()
        reply = await self.esl.api(f"global_setvar ivagate_ready={value}")
        self._ready = ready and reply.startswith("+OK")
        self.metrics.ready.set(1 if self.ready else 0)
        log.info("ivagate_ready=%s: %s", value, reply.strip())

    async def _extend_lease(self) -> None:
        until = round((time.time() + self.settings.esl.ready_lease) * 1_000_000)
        await self.esl.api(f"global_setvar ivagate_ready_until={until}")

    async def _renew_lease(self) -> None:
        """Keep the node's ready lease ahead of the clock while the node is ready."""
        while True:
            await asyncio.sleep(self.settings.esl.ready_refresh)
            if self.ready:
                try:
                    await self._extend_lease()
                except EslError as exc:  # the connection's own handling reports the rest
                    log.warning("could not renew the ready lease: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.add(asyncio.create_task(self._guarded(work)))

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``, log what it raises, forget its task (here, not in a done-callback:
        a callback is one more turn of the event loop per call)."""
        try:
            await work
        except Exception:
            log.exception("controller task failed")
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
