"""The Event Socket adapter: the only module that imports greenswitch, gevent or greenlet.

greenswitch's ``InboundESL`` speaks the protocol: its reader (``receive_events``, a loop of
blocking ``readline``/``read`` calls) splits frames, parses their headers, pairs each
``command/reply`` and ``api/response`` with the oldest command awaiting one, and spots
``auth/request`` and disconnect notices. Here that reader runs as a greenlet in the asyncio
thread, fed by an asyncio protocol: ``data_received`` appends to the buffer greenswitch
reads from and switches to the reader, which parses every whole frame and switches back when
it needs bytes not yet received. gevent's hub never runs and the process is never
monkey-patched.

This uses greenswitch's internals, not only its public API (``connect``, ``send``,
``register_handle``, ``stop``), because the public API measured twice the CPU and misses the
target (< 15 % of a core at 150 calls/s): greenswitch as its authors intend, its own connect,
reader and event greenlets on a gevent hub in a thread of their own with thread-safe
hand-offs both ways (commit 7fad949, reverted), cost 30.2, 33.1 and 31.4 % of a core against
14.3, 16.9 and 14.4 % for this arrangement, in alternating runs of ``python -m benchmarks
controller`` (median runs, 4 December 2026, a shared host). That API also decodes an event
whole before splitting its lines, so values holding encoded newlines (the SDP) cannot be
read back, and its reader's death goes unseen. What this relies on is pinned, one test per
behaviour, in tests/control/test_greenswitch_pins.py, with greenswitch pinned exactly in
pyproject.toml: the reader reads ``sock_file`` and calls ``handle_event``; ``_run`` stops it;
it ends at EOF and closes ``sock`` on a read error; replies settle the oldest entry of
``_commands_sent``; ``auth/request`` sets ``_auth_request_event``; bodies are read through
``_read_socket``. What greenswitch 0.0.19 lacks is fixed here too:

* ``send()`` used ``socket.send`` and ignored partial writes, so a large INFO body could be
  cut: commands go to the asyncio transport, which writes everything, in order;
* replies had no timeout: a command whose reply does not come within ``esl.reply_timeout``
  fails with ``EslTimeout``, alone; its late reply is still taken for it (replies are matched
  by position), and a liveness probe asks whether FreeSWITCH answers at all: only a probe
  without a reply within the timeout closes the connection, which ends every call;
* ``text/event-plain`` bodies were URL-decoded as a whole before being split into lines, which
  breaks values holding encoded newlines or ``": "``; we parse them line by line instead;
* a short read at EOF looped for ever: the reader now ends at EOF;
* there was no reconnect: ``EslClient`` reconnects with exponential backoff and tells its
  listener when the connection comes and goes.

Replies to ``bgapi`` and ``sendmsg`` are correlated by the ``Job-UUID`` / ``Event-UUID`` we
send (FreeSWITCH echoes them in BACKGROUND_JOB and as CHANNEL_EXECUTE_COMPLETE's
``Application-UUID``), never by arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

import greenlet
from greenswitch.esl import InboundESL

from .events import (
    EVENTS_WITHOUT_BODY,
    SUBSCRIBED_EVENTS,
    BackgroundJob,
    ChannelExecuteComplete,
    EslEvent,
    header_value,
    parse_event,
)
from .settings import EslSettings

__all__ = [
    "EslClient",
    "EslCommandError",
    "EslDisconnected",
    "EslError",
    "EslListener",
    "EslTimeout",
]

log = logging.getLogger(__name__)

# Sent when a reply is late, to learn whether FreeSWITCH still answers: cheap, no side effect
LIVENESS_PROBE = "api uptime"


class EslError(RuntimeError):
    """An Event Socket command could not be carried out."""


class EslDisconnected(EslError):
    """There is no Event Socket connection (or it dropped while waiting)."""


class EslTimeout(EslError):
    """FreeSWITCH did not answer within ``esl.reply_timeout``."""


class EslCommandError(EslError):
    """FreeSWITCH refused a command (its reply did not start with ``+OK``)."""


class EslListener(Protocol):
    """Who receives the connection's news, on the asyncio loop, in wire order."""

    def esl_connected(self) -> None: ...

    def esl_disconnected(self) -> None: ...

    def esl_event(self, event: EslEvent) -> None: ...


class _Received:
    """The file greenswitch's reader reads from: the bytes received so far. Asking for more
    than has come pauses the reader greenlet until ``data_received`` brings more."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0  # what the reader has taken is dropped lazily, not at each read
        self.eof = False
        self.reader: greenlet.greenlet | None = None

    def feed(self, data: bytes) -> None:
        if self._start > len(self._data) // 2:
            del self._data[: self._start]
            self._start = 0
        self._data += data

    # readline and read return a copy of what they take (greenswitch only decodes it)

    def readline(self) -> bytearray:
        start = self._start
        while (end := self._data.find(b"\n", start)) < 0 and not self.eof:
            self._wait()
            start = self._start  # feed() may have dropped what was taken before
        end = len(self._data) if end < 0 else end + 1
        self._start = end
        return self._data[start:end]

    def read(self, length: int) -> bytearray:
        while len(self._data) - self._start < length and not self.eof:
            self._wait()
        start = self._start
        self._start = end = min(len(self._data), start + length)
        return self._data[start:end]

    def _wait(self) -> None:
        assert self.reader is not None and self.reader.parent is not None
        self.reader.parent.switch()  # back to data_received, which resumes us with more


class _AuthRequest:
    """Stands in for greenswitch's ``_auth_request_event``: its reader ``set()``s it on
    ``auth/request`` (and on a rude rejection), which here settles an asyncio future."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.arrived: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self.arrived.done():
            self.arrived.set_result(None)


class _Connection(InboundESL, asyncio.Protocol):  # type: ignore[misc]  # greenswitch is untyped
    """greenswitch's InboundESL fed by an asyncio protocol, with its gaps fixed (see the
    module docstring)."""

    def __init__(
        self,
        settings: EslSettings,
        loop: asyncio.AbstractEventLoop,
        parse: Callable[[str], EslEvent | None],
        deliver: Callable[[EslEvent], None],
    ) -> None:
        super().__init__(
            settings.host,
            settings.port,
            settings.password.get_secret_value(),
            timeout=settings.reply_timeout,
        )
        self._loop = loop
        self._parse = parse  # a text/event-plain frame to an event, or None to skip it
        self._deliver = deliver  # called on the loop, never in the reader greenlet
        self._auth_request_event = _AuthRequest(loop)
        self.sock_file = _Received()
        self.received: deque[EslEvent] = deque()  # parsed by the reader, not yet delivered
        self.closed: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None  # armed while replies are owed
        self._probing = False  # a liveness probe awaits its reply

    @property
    def auth_requested(self) -> asyncio.Future[None]:
        arrived: asyncio.Future[None] = self._auth_request_event.arrived
        return arrived

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # greenswitch's reader closes ``sock`` on a read error
        self._transport = self.sock = cast("asyncio.Transport", transport)
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.connected = True
        self.sock_file.reader = greenlet.greenlet(self.receive_events)

    def data_received(self, data: bytes) -> None:
        self.sock_file.feed(data)
        self._resume_reader()

    def eof_received(self) -> bool:
        self.sock_file.eof = True
        self._resume_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.connected = False
        self._run = False
        self.sock_file.eof = True
        self._resume_reader()  # it delivers what came before the loss, and ends
        self._auth_request_event.set()  # a peer that closes before auth/request ends the wait
        if self._watchdog is not None:
            self._watchdog.cancel()
        lost = EslDisconnected("Event Socket connection lost")
        for reply in self._commands_sent:
            reply.set_exception(lost)
        self._commands_sent.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    def _resume_reader(self) -> None:
        reader = self.sock_file.reader
        if reader is None or reader.dead:
            return
        reader.switch()
        while self.received:
            event = self.received.popleft()
            try:
                self._deliver(event)
            except Exception:  # the listener's bug must not end the connection
                log.exception("handling %s failed", event.name)
        if reader.dead:  # it ended (EOF, or a frame it could not read): so does the link
            self.close()

    # -- greenswitch's side ------------------------------------------------------------

    def submit(self, command: str, reply: asyncio.Future[Any], probe: bool = False) -> None:
        """Write a command; ``reply`` takes its place in greenswitch's reply queue."""
        if not self.connected or self._transport is None:
            raise EslDisconnected("no Event Socket connection")
        self._commands_sent.append(_Reply(reply, self._loop.time(), probe))
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self.timeout, self._check_replies)
        self._transport.write(f"{command}\n\n".encode())

    def _check_replies(self) -> None:
        """The reply timeout: one timer per connection, not one per command.

        A late reply fails its command only: the command stays in the reply queue, so its
        reply, when it comes, is taken for it and not for the next one (replies are matched
        by position). Whether FreeSWITCH still answers at all is then asked with a probe,
        answered after every command before it; only a probe without a reply within the
        timeout drops the connection.
        """
        self._watchdog = None
        now = self._loop.time()
        late = False
        for reply in self._commands_sent:
            if reply.future.done():  # timed out already, or its caller gave up
                continue
            due = reply.sent_at + self.timeout
            if now < due:
                self._watchdog = self._loop.call_at(due, self._check_replies)
                break
            reply.set_exception(EslTimeout(f"no reply within {self.timeout}s"))
            if reply.probe:
                log.error("no reply from FreeSWITCH within %ss; reconnecting", self.timeout)
                self.close()
                return
            late = True
        if late and not self._probing and self.connected:
            log.warning("a reply from FreeSWITCH is %ss late; probing", self.timeout)
            self._probe()

    def _probe(self) -> None:
        answered: asyncio.Future[Any] = self._loop.create_future()
        answered.add_done_callback(self._probed)
        self.submit(LIVENESS_PROBE, answered, probe=True)
        self._probing = True

    def _probed(self, answered: asyncio.Future[Any]) -> None:
        self._probing = False
        if not answered.cancelled():
            answered.exception()  # retrieved: a timeout or a lost connection is handled

    def handle_event(self, event: Any) -> None:
        try:
            if event.headers.get("Content-Type") == "text/event-plain":
                text = self._read_socket(self.sock_file, int(event.headers["Content-Length"]))
                parsed = self._parse(text)
                if parsed is not None:
                    self.received.append(parsed)
            else:
                super().handle_event(event)
        except Exception:
            log.exception("unreadable Event Socket frame; reconnecting")
            self._run = False

    @staticmethod
    def _read_socket(sock: Any, length: int) -> str:
        data: bytearray = sock.read(length)  # short only at EOF
        if len(data) < length:
            raise EOFError("Event Socket closed mid-frame")
        return data.decode()

    def close(self) -> None:
        """Drop the connection; pending replies fail once it is gone."""
        self._run = False
        self.connected = False
        if self._transport is not None:
            self._transport.abort()


class _Reply:
    """A command's place in greenswitch's reply queue: settles its asyncio future."""

    __slots__ = ("future", "probe", "sent_at")

    def __init__(self, future: asyncio.Future[Any], sent_at: float, probe: bool) -> None:
        self.future = future
        self.sent_at = sent_at  # loop time, for the connection's reply timeout
        self.probe = probe  # the liveness probe: no reply to it drops the connection

    def set(self, event: Any) -> None:
        _settle(self.future, event.data, None)

    def set_exception(self, error: BaseException) -> None:
        _settle(self.future, None, error)


class EslClient:
    """One inbound Event Socket connection, reconnected with backoff, used from asyncio."""

    def __init__(self, settings: EslSettings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: EslListener | None = None
        self._serving: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._connected = False
        self._id_prefix = str(uuid.uuid4())[:24]
        self._ids = itertools.count(1)
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._apps: dict[str, asyncio.Future[ChannelExecuteComplete]] = {}

    @property
    def connected(self) -> bool:
        """True between the listener's ``esl_connected`` and ``esl_disconnected``."""
        return self._connected

    async def start(self, listener: EslListener) -> None:
        """Start connecting (and reconnecting) in the background."""
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._serving = asyncio.create_task(self._serve(), name="ivagate-esl")

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        if self._serving is None:
            return
        self._serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._serving
        self._serving = None

    async def api(self, command: str) -> str:
        """``api <command>``: FreeSWITCH's reply body. Blocks the connection while it runs."""
        reply: str = await self._send(f"api {command}")
        return reply

    async def bgapi(self, command: str) -> str:
        """``bgapi <command>``: the BACKGROUND_JOB body, matched by our ``Job-UUID``."""
        job_uuid = self._new_id()
        done = self._future(self._jobs, job_uuid)
        try:
            await self._expect_ok(f"bgapi {command}\nJob-UUID: {job_uuid}")
            if not done.done():  # it usually came in the same read as the reply
                async with asyncio.timeout(self.settings.reply_timeout):
                    await done
            body: str = done.result()
            return body
        except TimeoutError:
            raise EslTimeout(f"no BACKGROUND_JOB for {command!r}") from None
        finally:
            self._jobs.pop(job_uuid, None)

    async def execute(self, channel: str, app: str, arg: str = "") -> ChannelExecuteComplete:
        """Run dialplan ``app`` on ``channel`` (``sendmsg``) and wait for it to complete."""
        if "\n" in arg or "\n" in app:
            raise ValueError("application name and argument must be one line")
        event_uuid = self._new_id()
        done = self._future(self._apps, event_uuid)
        lines = [f"sendmsg {channel}", "call-command: execute", f"execute-app-name: {app}"]
        if arg:
            lines.append(f"execute-app-arg: {arg}")
        lines.append(f"Event-UUID: {event_uuid}")
        try:
            await self._expect_ok("\n".join(lines))
            complete: ChannelExecuteComplete = await done
            return complete
        finally:
            self._apps.pop(event_uuid, None)

    # -- commands ----------------------------------------------------------------------

    def _new_id(self) -> str:
        """A Job-UUID / Event-UUID: unique to this client, in UUID form, without a syscall
        for random bytes as ``uuid4()`` takes for each."""
        return f"{self._id_prefix}{next(self._ids):012x}"

    def _new_future(self) -> asyncio.Future[Any]:
        if not self._connected or self._loop is None:
            raise EslDisconnected("no Event Socket connection")
        return self._loop.create_future()

    def _future(self, table: dict[str, asyncio.Future[Any]], key: str) -> asyncio.Future[Any]:
        future = table[key] = self._new_future()
        return future

    async def _expect_ok(self, data: str) -> None:
        reply: str = await self._send(data)
        if not reply.startswith("+OK"):
            raise EslCommandError(reply.strip())

    def _send(self, data: str) -> asyncio.Future[Any]:
        """Write ``data`` now; the future is settled by its reply.

        At once, not gathered for a write at the end of the loop's turn: at 150 calls/s a
        turn rarely has two commands, and the deferred write cost a turn of the loop each.
        """
        future = self._new_future()  # EslDisconnected when there is no connection
        assert self._conn is not None  # set while connected
        self._conn.submit(data, future)  # EslDisconnected when it is closing
        return future

    # -- the connection ----------------------------------------------------------------

    async def _serve(self) -> None:
        delay = self.settings.reconnect_min
        try:
            while True:
                conn = await self._connect()
                if conn is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.settings.reconnect_max)
                    continue
                delay = self.settings.reconnect_min
                self._set_connected(True)
                await conn.closed
                self._set_connected(False)
                log.warning("Event Socket connection lost; reconnecting")
        finally:
            if self._conn is not None:
                self._conn.close()
                self._set_connected(False)

    async def _connect(self) -> _Connection | None:
        """Connect, authenticate and subscribe; None (logged) when any step fails."""
        where = f"{self.settings.host}:{self.settings.port}"
        assert self._loop is not None
        conn = _Connection(self.settings, self._loop, self._event_read, self._dispatch)
        self._conn = conn
        try:
            async with asyncio.timeout(self.settings.reply_timeout):
                await self._loop.create_connection(
                    lambda: conn, self.settings.host, self.settings.port
                )
                await conn.auth_requested
            if not conn.connected:
                raise EslDisconnected("closed before auth/request")
            for command, accepted in (
                (f"auth {conn.password}", "+OK accepted"),
                ("event plain " + " ".join(SUBSCRIBED_EVENTS), "+OK"),
            ):
                future = self._loop.create_future()
                conn.submit(command, future)
                reply: str = await future
                if not reply.startswith(accepted):
                    raise EslCommandError(reply if command.startswith("event") else "auth")
        except (OSError, EslError, TimeoutError) as exc:
            log.warning("cannot connect to FreeSWITCH's Event Socket at %s: %r", where, exc)
            conn.close()
            self._conn = None
            return None
        log.info("connected to FreeSWITCH's Event Socket at %s", where)
        return conn

    def _set_connected(self, up: bool) -> None:
        if up == self._connected:
            return
        self._connected = up
        assert self._listener is not None
        if up:
            self._listener.esl_connected()
            return
        self._conn = None
        lost = EslDisconnected("Event Socket connection lost")
        for table in (self._jobs, self._apps):
            for waiter in table.values():
                if not waiter.done():
                    waiter.set_exception(lost)
            table.clear()
        self._listener.esl_disconnected()

    def _event_read(self, text: str) -> EslEvent | None:
        """A plain event (its header block, then its body if it has one), parsed unless
        nobody can want it.

        Every dialplan application of every call completes with an event, and every bgapi
        of any Event Socket client ends with one; only those we wait for are parsed (a
        waiter is registered before its command is sent).
        """
        name = header_value(text, "Event-Name")  # the first header, before any body
        if name in EVENTS_WITHOUT_BODY:
            head, body = text, ""  # no search for the blank line through 5-10 KB of headers
        else:
            head, _, body = text.partition("\n\n")
        if name == "CHANNEL_EXECUTE_COMPLETE":
            wanted = header_value(head, "Application-UUID", from_end=True) in self._apps
        elif name == "BACKGROUND_JOB":
            wanted = header_value(head, "Job-UUID") in self._jobs
        else:
            wanted = True
        return parse_event(head, body, name) if wanted else None

    def _dispatch(self, event: EslEvent) -> None:
        table: dict[str, asyncio.Future[Any]] | None = None
        key = ""
        if isinstance(event, BackgroundJob):
            table, key = self._jobs, event.job_uuid
        elif isinstance(event, ChannelExecuteComplete):
            table, key = self._apps, event.application_uuid
        if table is not None:
            waiter = table.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.body if isinstance(event, BackgroundJob) else event)
        assert self._listener is not None
        self._listener.esl_event(event)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting side gave up (cancelled), or was settled already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
