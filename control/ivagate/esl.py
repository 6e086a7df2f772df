"""The Event Socket adapter: the only module that imports greenswitch or gevent.

greenswitch's ``InboundESL`` runs on its own thread with its own gevent hub; the asyncio
process is never monkey-patched. Events and replies cross to asyncio with
``loop.call_soon_threadsafe``, commands cross to the hub with
``hub.loop.run_callback_threadsafe``; both ways items queue up and one wake-up carries a
batch (the hub sends its batch once it has read what the socket held), because each wake-up
costs far more than the item. A batch of commands is written in one ``sendall``, and its
replies settle their asyncio futures from greenswitch's reader: no greenlet waits for each
command. What greenswitch 0.0.19 lacks is fixed here, in a subclass:

* ``send()`` used ``socket.send`` and ignored partial writes, so a large INFO body could be
  cut: we write until all is sent, under a lock, so commands never interleave on the wire
  and the order of greenswitch's reply queue stays the order of the bytes sent;
* the socket was read through an 8 KB buffer, smaller than one CHANNEL_HANGUP_COMPLETE: a
  64 KB one reads many events per ``recv``;
* replies had no timeout: a reply that does not come within ``esl.reply_timeout`` closes the
  connection (replies are matched by position, so the connection cannot be trusted after a
  lost one) and the caller gets ``EslTimeout``;
* ``text/event-plain`` bodies were URL-decoded as a whole before being split into lines, which
  breaks values holding encoded newlines or ``": "``; we parse them line by line instead;
* a short read at EOF looped for ever, and a peer closing before ``auth/request`` left
  ``connect()`` waiting for it: both now end the attempt;
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
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
from greenswitch.esl import InboundESL, NotConnectedError

from . import metrics
from .events import (
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

_READ_BUFFER = 1 << 16  # bytes; a CHANNEL_HANGUP_COMPLETE alone is some 10 KB

# Each side wakes the other thread at most once in this many seconds; what queues up
# meanwhile rides on the next wake-up. A wake-up costs both threads context switches and a
# hand-over of the GIL, far more than the items it carries (at 150 calls/s, ten a call, they
# were a third of the controller's CPU). The price is up to this much latency, paid only
# when hand-offs come closer together than this.
_HANDOFF_SPACING = 0.002


class EslError(RuntimeError):
    """An Event Socket command could not be carried out."""


class EslDisconnected(EslError):
    """There is no Event Socket connection (or it dropped while waiting)."""


class EslTimeout(EslError):
    """FreeSWITCH did not answer within ``esl.reply_timeout``."""


class EslCommandError(EslError):
    """FreeSWITCH refused a command (its reply did not start with ``+OK``)."""


class EslListener(Protocol):
    """Who receives the connection's news, always on the asyncio loop, in wire order."""

    def esl_connected(self) -> None: ...

    def esl_disconnected(self) -> None: ...

    def esl_event(self, event: EslEvent) -> None: ...


class _Connection(InboundESL):  # type: ignore[misc]  # greenswitch is untyped
    """greenswitch's InboundESL with its gaps fixed (see the module docstring)."""

    sock_file: Any

    def __init__(self, settings: EslSettings, on_event: Callable[[str, str], None]) -> None:
        super().__init__(
            settings.host,
            settings.port,
            settings.password.get_secret_value(),
            timeout=settings.reply_timeout,
        )
        self._send_lock = gevent.lock.Semaphore()
        self._on_event = on_event  # (header block, body) of each text/event-plain frame

    def start_event_handlers(self) -> None:
        self.sock_file.close()  # connect() made it with the default 8 KB buffer
        self.sock_file = self.sock.makefile("rb", buffering=_READ_BUFFER)
        super().start_event_handlers()
        # connect() waits for auth/request; a peer that closes at once must end that wait
        self._receive_events_greenlet.link(lambda _: self._auth_request_event.set())

    def submit(self, batch: list[tuple[str, Any]]) -> None:
        """Write commands in one go, each with what receives its reply (``set(event)``)."""
        if not self.connected:
            raise NotConnectedError()
        data = memoryview("".join(f"{command}\n\n" for command, _ in batch).encode())
        with self._send_lock:
            self._commands_sent.extend(reply for _, reply in batch)
            # send() until all is written: gevent's sendall() costs three more system calls
            # for each command (it asks for the socket's buffer size)
            while data:
                data = data[self.sock.send(data) :]

    def send(self, data: str) -> Any:
        reply = gevent.event.AsyncResult()
        self.submit([(data, reply)])
        try:
            return reply.get(timeout=self.timeout)
        except gevent.Timeout:
            raise self.reply_late() from None

    def reply_late(self) -> EslTimeout:
        """A reply did not come in time: drop the connection (replies are matched by
        position, so it cannot be trusted after a lost one)."""
        log.error("no reply from FreeSWITCH within %ss; reconnecting", self.timeout)
        self.close()
        return EslTimeout(f"no reply within {self.timeout}s")

    def handle_event(self, event: Any) -> None:
        try:
            if event.headers.get("Content-Type") == "text/event-plain":
                text = self._read_socket(self.sock_file, int(event.headers["Content-Length"]))
                head, _, body = text.partition("\n\n")
                self._on_event(head, body)
            else:
                super().handle_event(event)
        except Exception:
            log.exception("unreadable Event Socket frame; reconnecting")
            self.close()

    @staticmethod
    def _read_socket(sock: Any, length: int) -> str:
        data: bytes = sock.read(length)  # a buffered reader returns short only at EOF
        if len(data) < length:
            raise EOFError("Event Socket closed mid-frame")
        return data.decode()

    def close(self) -> None:
        """Drop the connection; the reader greenlet ends and pending replies fail."""
        self._run = False
        self.connected = False
        sock = getattr(self, "sock", None)
        if sock is not None:
            # shutdown() wakes the reader: close() alone keeps the fd open for the makefile
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def fail_pending(self) -> None:
        for reply in self._commands_sent:
            if not reply.ready():
                reply.set_exception(EslDisconnected("Event Socket connection lost"))
        self._commands_sent.clear()


class _Reply:
    """A command's place in greenswitch's reply queue: settles an asyncio future from the hub,
    so no greenlet waits for each command. A reply that does not come within
    ``esl.reply_timeout`` of the command being written drops the connection."""

    __slots__ = ("_client", "_conn", "_done", "_future", "_timer")

    def __init__(self, client: EslClient, conn: _Connection, future: asyncio.Future[Any]) -> None:
        self._client = client
        self._conn = conn
        self._future = future
        self._done = False
        self._timer: Any = gevent.get_hub().loop.timer(conn.timeout)

    def arm(self) -> None:
        """Start the reply timeout (once the command is written; its reply may be in)."""
        if not self._done:
            self._timer.start(self._late)

    def ready(self) -> bool:
        return self._done

    def set(self, event: Any) -> None:
        self._settle(event.data, None)

    def set_exception(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, reply: str | None, error: BaseException | None) -> None:
        self._done = True
        self._timer.stop()
        self._client.to_loop(_settle, self._future, reply, error)

    def _late(self) -> None:
        self.set_exception(self._conn.reply_late())


class EslClient:
    """One inbound Event Socket connection, reconnected with backoff, used from asyncio."""

    def __init__(self, settings: EslSettings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: EslListener | None = None
        self._thread: threading.Thread | None = None
        self._hub_loop: Any = None
        self._wake: Any = None  # gevent Event: interrupts the backoff sleep on close()
        self._conn: _Connection | None = None
        self._stopping = False
        self._connected = False
        self._id_prefix = str(uuid.uuid4())[:24]
        self._ids = itertools.count(1)
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._apps: dict[str, asyncio.Future[ChannelExecuteComplete]] = {}
        # Hand-offs between the threads. Each side drains its queue when woken and clears
        # its "woken" flag before draining, so an item is never left without a wake-up.
        self._to_asyncio: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._to_hub: deque[tuple[str, asyncio.Future[Any]]] = deque()
        self._loop_woken = False
        self._hub_woken = False
        self._hub_woken_at = 0.0  # time.monotonic() of the last wake-up each way
        self._loop_woken_at = 0.0
        self._flush_due = False  # the hub wakes asyncio once it has read what it can
        self._flush_timer: Any = None

    @property
    def connected(self) -> bool:
        """True between the listener's ``esl_connected`` and ``esl_disconnected``."""
        return self._connected

    async def start(self, listener: EslListener) -> None:
        """Start the hub thread; it connects (and reconnects) in the background."""
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        started: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._hub_main, args=(started,), name="ivagate-esl", daemon=True
        )
        self._thread.start()
        await started

    async def close(self) -> None:
        """Close the connection and stop the hub thread."""
        if self._thread is None:
            return
        self._stopping = True
        self._hub_loop.run_callback_threadsafe(self._stop_in_hub)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def api(self, command: str) -> str:
        """``api <command>``: FreeSWITCH's reply body. Blocks the connection while it runs."""
        reply: str = await self._in_hub(f"api {command}")
        return reply

    async def bgapi(self, command: str) -> str:
        """``bgapi <command>``: the BACKGROUND_JOB body, matched by our ``Job-UUID``."""
        job_uuid = self._new_id()
        done = self._future(self._jobs, job_uuid)
        try:
            await self._expect_ok(f"bgapi {command}\nJob-UUID: {job_uuid}")
            if not done.done():  # it usually came in the same batch as the reply
                await asyncio.wait_for(done, self.settings.reply_timeout)
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

    # -- asyncio side ------------------------------------------------------------------

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
        reply: str = await self._in_hub(data)
        if not reply.startswith("+OK"):
            raise EslCommandError(reply.strip())

    def _in_hub(self, data: str) -> asyncio.Future[Any]:
        """Send ``data``; the future is settled by its reply."""
        future = self._new_future()
        self._to_hub.append((data, future))
        if not self._hub_woken:
            self._hub_woken = True
            wait = self._hub_woken_at + _HANDOFF_SPACING - time.monotonic()
            if wait > 0:
                assert self._loop is not None
                self._loop.call_later(wait, self._wake_hub)
            else:
                self._wake_hub()
        return future

    def _wake_hub(self) -> None:
        self._hub_woken_at = time.monotonic()
        try:
            self._hub_loop.run_callback_threadsafe(self._send_queued)
        except ValueError:  # the hub is gone (closed meanwhile): nothing will be sent
            lost = EslDisconnected("no Event Socket connection")
            while self._to_hub:
                _settle(self._to_hub.popleft()[1], None, lost)

    def _run_queued(self) -> None:
        self._loop_woken = False
        while self._to_asyncio:
            callback, args = self._to_asyncio.popleft()
            callback(*args)

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

    def _set_connected(self, up: bool) -> None:
        self._connected = up
        metrics.ESL_CONNECTED.set(1 if up else 0)
        assert self._listener is not None
        if up:
            self._listener.esl_connected()
            return
        lost = EslDisconnected("Event Socket connection lost")
        for table in (self._jobs, self._apps):
            for waiter in table.values():
                if not waiter.done():
                    waiter.set_exception(lost)
            table.clear()
        self._listener.esl_disconnected()

    # -- hub thread --------------------------------------------------------------------

    def to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Queue ``callback(*args)`` for the asyncio loop; called on the hub thread only."""
        self._to_asyncio.append((callback, args))
        if not self._flush_due:
            self._flush_due = True
            wait = self._loop_woken_at + _HANDOFF_SPACING - time.monotonic()
            if wait > 0:
                self._flush_timer = self._hub_loop.timer(wait)
                self._flush_timer.start(self._flush)
            else:
                self._hub_loop.run_callback(self._flush)

    def _flush(self) -> None:
        """Wake asyncio for what the hub queued (runs once the hub's greenlets have yielded)."""
        self._flush_due = False
        if self._to_asyncio and not self._loop_woken:
            self._loop_woken = True
            self._loop_woken_at = time.monotonic()
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._run_queued)

    def _hub_main(self, started: asyncio.Future[None]) -> None:
        hub = gevent.get_hub()  # a new hub: this thread's own
        self._hub_loop = hub.loop
        self._wake = gevent.event.Event()
        self.to_loop(started.set_result, None)
        gevent.spawn(self._serve).join()
        self._flush()  # what _serve queued last (the disconnect) must not wait for the hub
        hub.destroy(destroy_loop=True)

    def _serve(self) -> None:
        delay = self.settings.reconnect_min
        while not self._stopping:
            conn = self._connect()
            if conn is None:
                self._wake.wait(delay)
                delay = min(delay * 2, self.settings.reconnect_max)
                continue
            delay = self.settings.reconnect_min
            self._conn = conn
            self.to_loop(self._set_connected, True)
            conn._receive_events_greenlet.join()
            self._conn = None
            conn.close()
            conn.fail_pending()
            self.to_loop(self._set_connected, False)
            if not self._stopping:
                log.warning("Event Socket connection lost; reconnecting")

    def _connect(self) -> _Connection | None:
        where = f"{self.settings.host}:{self.settings.port}"
        conn = _Connection(self.settings, self._event_in_hub)
        try:
            with gevent.Timeout(self.settings.reply_timeout, EslTimeout("no auth/request")):
                conn.connect()
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            reply = conn.send("event plain " + " ".join(SUBSCRIBED_EVENTS))
            if not reply.data.startswith("+OK"):
                raise EslCommandError(reply.data)
        except (Exception, gevent.Timeout) as exc:
            log.warning("cannot connect to FreeSWITCH's Event Socket at %s: %r", where, exc)
            conn.close()
            return None
        log.info("connected to FreeSWITCH's Event Socket at %s", where)
        return conn

    def _event_in_hub(self, head: str, body: str) -> None:
        """A plain event: handed to asyncio unless nobody there can want it.

        Every dialplan application of every call completes with an event, and every bgapi
        of any Event Socket client ends with one; only those we wait for go over (the dict
        lookups across threads are atomic, and a waiter is registered before its command
        is sent).
        """
        name = header_value(head, "Event-Name")
        if name == "CHANNEL_EXECUTE_COMPLETE":
            wanted = header_value(head, "Application-UUID") in self._apps
        elif name == "BACKGROUND_JOB":
            wanted = header_value(head, "Job-UUID") in self._jobs
        else:
            wanted = True
        if wanted:
            self.to_loop(self._dispatch, parse_event(head, body))

    def _send_queued(self) -> None:
        self._hub_woken = False
        batch = [self._to_hub.popleft() for _ in range(len(self._to_hub))]
        gevent.spawn(self._send_batch, batch)

    def _send_batch(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        conn = self._conn
        if conn is None or not conn.connected:
            for _, future in batch:
                self.to_loop(_settle, future, None, EslDisconnected("no Event Socket connection"))
            return
        replies = [(data, _Reply(self, conn, future)) for data, future in batch]
        try:
            conn.submit(replies)
        except (NotConnectedError, OSError) as exc:
            error = EslDisconnected(str(exc) or "not connected")
            for _, reply in replies:
                if not reply.ready():
                    reply.set_exception(error)
            return
        for _, reply in replies:
            reply.arm()

    def _stop_in_hub(self) -> None:
        self._wake.set()
        if self._conn is not None:
            self._conn.close()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting side gave up (cancelled), or was settled already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
