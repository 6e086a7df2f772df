"""What ``ivagate.esl`` relies on in greenswitch 0.0.19 beyond its public API, one test each.

The adapter runs greenswitch's reader (``receive_events``) as a greenlet fed by an asyncio
protocol instead of through ``connect()`` and a gevent hub (measured cheaper; see the
adapter's docstring), so it uses greenswitch's internals. Each test drives greenswitch's own
``InboundESL`` as the adapter does, with no socket and no hub, and fails if a release
changes the behaviour the adapter depends on.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from greenswitch.esl import InboundESL

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
AUTH_ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
API_RESPONSE = b"Content-Type: api/response\nContent-Length: 4\n\n+OK\n"
EVENT = b"Content-Length: 25\nContent-Type: text/event-plain\n\nEvent-Name: CHANNEL_PARK\n"


class Received:
    """What the adapter gives greenswitch as ``sock_file``: ``readline`` and ``read``
    returning bytearrays, ``b""`` at the end."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readline(self) -> bytearray:
        return bytearray(self._data.readline())

    def read(self, length: int) -> bytearray:
        return bytearray(self._data.read(length))


class Reply:
    """What the adapter puts in ``_commands_sent``: something with ``set(event)``."""

    def __init__(self) -> None:
        self.data: str | None = None

    def set(self, event: Any) -> None:
        self.data = event.data


class Flag:
    """What the adapter puts in ``_auth_request_event``: something with ``set()``."""

    def __init__(self) -> None:
        self.times = 0

    def set(self) -> None:
        self.times += 1


class Socket:
    """What the adapter puts in ``sock``: something with ``close()``."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Recording(InboundESL):  # type: ignore[misc]  # greenswitch is untyped
    """An InboundESL that keeps the header blocks its reader hands to ``handle_event``,
    as the adapter's override sees them, and ``connected`` after each; ``stop_after``
    frames, it sets ``_run`` False."""

    def __init__(self, stop_after: int = 0) -> None:
        super().__init__("127.0.0.1", 8021, "ClueCon", timeout=0.5)
        self.frames: list[dict[str, str]] = []
        self.connected_after: list[bool] = []
        self.stop_after = stop_after

    def handle_event(self, event: Any) -> None:
        self.frames.append(dict(event.headers))
        if len(self.frames) == self.stop_after:
            self._run = False
        super().handle_event(event)
        self.connected_after.append(self.connected)

    @property
    def content_types(self) -> list[str]:
        return [frame["Content-Type"] for frame in self.frames]


def reading(data: bytes, esl: InboundESL | None = None) -> InboundESL:
    """``esl`` (a new InboundESL by default) after its reader ran over ``data`` to the end."""
    esl = esl or InboundESL("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    esl.sock, esl.sock_file, esl.connected = Socket(), Received(data), True
    esl.receive_events()
    return esl


def test_the_constructor_keeps_password_and_timeout() -> None:
    """The adapter reads the password to authenticate and ``timeout`` as the reply timeout."""
    esl = InboundESL("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    assert (esl.password, esl.timeout) == ("ClueCon", 0.5)


def test_the_reader_hands_every_header_block_to_handle_event() -> None:
    """``receive_events`` reads ``sock_file`` line by line and calls ``self.handle_event``
    (the adapter's override) with each block's headers, bytearrays decoded."""
    esl = reading(AUTH_REQUEST + EVENT, Recording())
    assert esl.content_types == ["auth/request", "text/event-plain"]
    assert esl.frames[1]["Content-Length"] == "25"


def test_the_reader_ends_at_eof_and_marks_the_connection_down() -> None:
    """An empty ``readline()`` ends ``receive_events`` with ``connected`` and ``_run`` False
    (the adapter closes the transport when its reader greenlet is dead)."""
    esl = reading(AUTH_REQUEST)
    assert esl.connected is False and esl._run is False


def test_run_false_stops_the_reader_after_the_frame() -> None:
    """``_run`` is checked before each line: the adapter sets it False on a frame it cannot
    read, and the next frame is not read."""
    esl = reading(AUTH_REQUEST + AUTH_ACCEPTED, Recording(stop_after=1))
    assert esl.content_types == ["auth/request"]


def test_a_read_error_closes_sock_and_ends_the_reader() -> None:
    """A ``readline`` that raises: ``sock.close()`` (the adapter's transport) and the end."""

    class Broken(Received):
        def readline(self) -> bytearray:
            raise OSError("reset")

    esl = InboundESL("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    esl.sock, esl.sock_file, esl.connected = Socket(), Broken(b""), True
    esl.receive_events()
    assert esl.sock.closed and esl.connected is False and esl._run is False


def test_auth_request_sets_the_auth_request_event() -> None:
    """``auth/request`` calls ``self._auth_request_event.set()``, looked up at that time, so
    the adapter's stand-in set after construction is the one set."""
    esl = InboundESL("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    esl._auth_request_event = flag = Flag()
    reading(AUTH_REQUEST, esl)
    assert flag.times == 1


def test_rude_rejection_sets_the_auth_request_event_and_marks_down() -> None:
    """``text/rude-rejection``: ``connected`` False, the auth wait released, and its body
    read (the frame after it is read whole)."""
    rejection = b"Content-Type: text/rude-rejection\nContent-Length: 7\n\ndenied\n"
    esl = Recording()
    esl._auth_request_event = flag = Flag()
    reading(rejection + AUTH_REQUEST, esl)
    assert esl.connected_after == [False, False]
    assert flag.times == 2  # the rejection, then the auth/request after its body
    assert esl.content_types == ["text/rude-rejection", "auth/request"]


@pytest.mark.parametrize(
    ("frame", "data"),
    [(AUTH_ACCEPTED, "+OK accepted"), (API_RESPONSE, "+OK\n")],
    ids=["command-reply", "api-response"],
)
def test_a_reply_settles_the_oldest_entry_of_commands_sent(frame: bytes, data: str) -> None:
    """``_commands_sent`` is a list; a ``command/reply`` (its Reply-Text) or an
    ``api/response`` (its body) is given as ``event.data`` to the oldest entry's ``set()``,
    which leaves the list."""
    esl = InboundESL("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    first, second = Reply(), Reply()
    esl._commands_sent.extend([first, second])
    reading(frame, esl)
    assert (first.data, second.data) == (data, None)
    assert esl._commands_sent == [second]


def test_bodies_are_read_through_read_socket() -> None:
    """``api/response`` and event bodies are read by ``self._read_socket(self.sock_file,
    length)``, which the adapter overrides to stop at EOF instead of looping for ever."""
    reads: list[int] = []

    class Reading(InboundESL):  # type: ignore[misc]  # greenswitch is untyped
        @staticmethod
        def _read_socket(sock: Received, length: int) -> str:
            reads.append(length)
            return sock.read(length).decode()

    esl = Reading("127.0.0.1", 8021, "ClueCon", timeout=0.5)
    esl._commands_sent.append(Reply())
    reading(API_RESPONSE + EVENT, esl)
    assert reads == [4, 25]


def test_a_disconnect_notice_marks_down_without_a_hub() -> None:
    """``text/disconnect-notice`` sets ``connected`` False (commands then fail at once) and
    is queued without needing gevent's hub to run, as the adapter never runs it."""
    notice = b"Content-Type: text/disconnect-notice\nContent-Length: 0\n\n"
    esl = reading(AUTH_REQUEST + notice + AUTH_REQUEST, Recording())
    assert esl.connected_after == [True, False, False]
    assert len(esl.frames) == 3  # read on past it
