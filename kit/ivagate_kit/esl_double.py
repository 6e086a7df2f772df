"""An ESL test double: a real TCP server playing FreeSWITCH 1.10.12's inbound event socket.

Every byte it sends comes from the ESL recordings of FreeSWITCH 1.10.12 in the directory the
caller names (the repository's ``tests/fixtures/freeswitch-1.10.12/esl``, format in its
README), with the recorded channel UUID, Job-UUID / Application-UUID, DID, Call-ID, caller and
event timestamp substituted and the Content-Length headers recomputed. The frame is chosen by the
command received, and the double tracks each channel's state, so e.g. ``uuid_send_info`` after
hangup gets the recorded ``-ERR Operation Failed``.

Behaviour the recordings do not cover is marked ``NOT RECORDED`` below; tests avoid relying on
it.

Driving calls (tests and ``benchmarks/controller.py``)::

    double = EslDouble(recordings, password="secret"); await double.start()   # double.port
    uuid = await double.park(did="15550001000", headers={"X-Bot-Id": "demo"}, digits="1")
    uuid = await double.park(headers={"X-Dup": ["a", "b"]})   # a header sent twice
    await double.caller_hangup(uuid)       # RingCX's BYE
    await double.drop()                    # the Event Socket connection breaks
    double.channels[uuid].infos            # INFO bodies FreeSWITCH would have sent (dicts)
    double.received                        # (perf_counter, command) for every command
    await double.wait_for(lambda: ..., timeout=5)
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

__all__ = ["Channel", "EslDouble", "load_recording"]


def load_recording(recordings: Path, name: str) -> list[tuple[str, bytes]]:
    """Recording ``name`` of ``recordings`` as (``>>>`` or ``<<<``, frame bytes) in order."""
    data = (recordings / name).read_bytes()
    frames: list[tuple[str, bytes]] = []
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        direction, length, _ = data[at:end].decode().split()
        frames.append((direction, data[end + 1 : end + 1 + int(length)]))
        at = end + 1 + int(length) + 1
    return frames


def _split(frame: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = frame.partition(b"\n\n")
    return dict(line.split(": ", 1) for line in head.decode().splitlines()), body


def _event_name(frame: bytes) -> str:
    match = re.search(rb"^Event-Name: (\S+)", _split(frame)[1], re.M)
    return match.group(1).decode() if match else ""


def _unquote(text: str) -> str:
    """Undo the quoting of a single-quoted argument: a backslash takes the next character
    as it is. Split on escaped backslashes first: a regex substitution per escape took a
    second for a multi-megabyte body."""
    parts = (part.replace("\\'", "'") for part in text.split("\\\\"))
    return "\\".join(re.sub(r"\\(.)", r"\1", part) if "\\" in part else part for part in parts)


class _Recorded:
    """The frames the double replays, picked once from the recordings."""

    def __init__(self, recordings: Path) -> None:
        media = load_recording(recordings, "inbound-media.esl")
        received = [frame for direction, frame in media if direction == "<<<"]
        self.auth_request = received[0]
        self.auth_ok = received[1]
        self.events_ok = received[2]
        self.park = self._event(media, "CHANNEL_PARK")
        self.answer = self._event(media, "CHANNEL_ANSWER")
        self.dtmf = self._event(media, "DTMF")
        self.job = self._event(media, "BACKGROUND_JOB")
        self.speak_done = self._app_done(media, "speak")
        self.digits_done = self._app_done(media, "play_and_get_digits")
        self.bgapi_ok = next(f for d, f in media if d == "<<<" and b"Job-UUID: job-answer\n" in f)
        self.sendmsg_ok = next(
            f for d, f in media if d == "<<<" and f.endswith(b"Reply-Text: +OK\n\n")
        )
        bot = load_recording(recordings, "inbound-bot-hangup.esl")
        self.api_response = next(f for d, f in bot if d == "<<<" and b"api/response" in f)
        # a playback that ran to its end (outbound recording: same plain event format)
        self.playback_done = self._app_done(
            load_recording(recordings, "outbound-call-srtp.esl"), "playback"
        )
        caller = load_recording(recordings, "inbound-caller-hangup.esl")
        self.cut_done = self._app_done(caller, "playback")  # PLAYBACK ERROR: the BYE cut it
        self.caller_park_done = self._app_done(caller, "park")
        self.caller_hangup = self._event(caller, "CHANNEL_HANGUP_COMPLETE")
        self.kill_park_done = self._app_done(bot, "park")
        self.kill_hangup = self._event(bot, "CHANNEL_HANGUP_COMPLETE")
        listing = next(
            f for d, f in load_recording(recordings, "inbound-channels.esl") if b'"row_count"' in f
        )
        rows = json.loads(_split(listing)[1])["rows"]
        self.channel_row = next(row for row in rows if row.get("application") == "park")
        # with no channel on the node: commands about one that does not exist
        missing = load_recording(recordings, "inbound-no-channel.esl")
        self.uptime = self._api_body(missing, "api uptime")
        self.no_channels = self._api_body(missing, "api show channels as json")
        self.answer_missing = self._api_body(missing, "api uuid_answer ")
        self.setvar_missing = self._api_body(missing, "api uuid_setvar ")
        sendmsg = missing[self._sent(missing, "sendmsg ")][1]
        self.missing_uuid = sendmsg.split(b"\n")[0].split()[1]  # named in the reply too
        self.sendmsg_missing = self._reply(missing, "sendmsg ")
        wrong = load_recording(recordings, "inbound-wrong-password.esl")
        # the reply to the auth command, then the disconnect notice; then it closed
        self.auth_refused = [f for d, f in wrong[self._sent(wrong, "auth ") :] if d == "<<<"]
        timeout = load_recording(recordings, "inbound-digits-timeout.esl")
        self.setvar_ok = self._api_body(timeout, "api uuid_setvar ")
        self.digits_timeout = self._app_done(timeout, "play_and_get_digits")
        early = load_recording(recordings, "inbound-kill-before-answer.esl")
        self.early_kill_park_done = self._app_done(early, "park")
        self.early_kill_hangup = self._event(early, "CHANNEL_HANGUP_COMPLETE")
        # respond <status> before answer: its completion, park's, the hangup (by status)
        self.respond: dict[str, tuple[bytes, bytes, bytes]] = {}
        for name in ("inbound-reject.esl", "inbound-respond-503.esl", "inbound-respond-480.esl"):
            frames = load_recording(recordings, name)
            done = self._app_done(frames, "respond")
            status = unquote(_header(_split(done)[1], "Application-Data"))
            self.respond[status] = (
                done,
                self._app_done(frames, "park"),
                self._event(frames, "CHANNEL_HANGUP_COMPLETE"),
            )

    @staticmethod
    def _sent(frames: list[tuple[str, bytes]], command: str) -> int:
        """Where the first command sent that starts with ``command`` is."""
        prefix = command.encode()
        return next(i for i, (d, f) in enumerate(frames) if d == ">>>" and f.startswith(prefix))

    @classmethod
    def _reply(cls, frames: list[tuple[str, bytes]], command: str) -> bytes:
        """FreeSWITCH's reply to the first command sent that starts with ``command`` (the
        recordings send one command at a time)."""
        return next(
            f
            for d, f in frames[cls._sent(frames, command) :]
            if d == "<<<" and _header(f, "Content-Type") in ("api/response", "command/reply")
        )

    @classmethod
    def _api_body(cls, frames: list[tuple[str, bytes]], command: str) -> str:
        return _split(cls._reply(frames, command))[1].decode()

    @staticmethod
    def _event(frames: list[tuple[str, bytes]], name: str) -> bytes:
        return next(f for d, f in frames if d == "<<<" and _event_name(f) == name)

    @staticmethod
    def _app_done(frames: list[tuple[str, bytes]], app: str) -> bytes:
        return next(
            f
            for d, f in frames
            if d == "<<<"
            and _event_name(f) == "CHANNEL_EXECUTE_COMPLETE"
            and re.search(rb"^Application: " + app.encode() + rb"\n", f, re.M)
        )


@functools.cache
def _recorded(recordings: Path) -> _Recorded:
    """The frames of ``recordings``, parsed once per directory and process."""
    return _Recorded(recordings)


@dataclass
class Channel:
    """One call as the double's FreeSWITCH sees it."""

    uuid: str
    did: str
    caller: str
    call_id: str
    headers: dict[str, list[str]]  # each INVITE header's values, in order
    digits: str | None
    state: str = "parked"  # parked | answered | gone
    infos: list[dict[str, object]] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # Event-UUID -> app running
    hangup_cause: str | None = None


def _header(frame: bytes, name: str) -> str:
    match = re.search(rb"^" + re.escape(name.encode()) + rb": (.*)$", frame, re.M)
    return match.group(1).decode() if match else ""


def _encode(value: str) -> str:
    return quote(value, safe="/,")


def _joined(values: list[str]) -> str:
    """A header's values as one channel variable (recorded: ``ARRAY::a|:b|:c``)."""
    return values[0] if len(values) == 1 else "ARRAY::" + "|:".join(values)


class EslDouble:
    """The server. One instance per test; ``port`` is picked by the OS.

    ``recordings`` is the directory of ``.esl`` recordings every frame comes from.
    """

    def __init__(
        self, recordings: Path, password: str = "test-secret", media_seconds: float = 0.01
    ) -> None:
        self.password = password
        self.media_seconds = media_seconds
        self.port = 0
        self.channels: dict[str, Channel] = {}
        self.global_vars: dict[str, str] = {}
        self.received: list[tuple[float, str]] = []
        self.connections = 0
        self.refuse = False  # close new connections at once (FreeSWITCH down)
        self.mute = False  # read commands but never answer (a stuck FreeSWITCH)
        self.reply_delay = 0.0  # seconds before each command is answered (a busy FreeSWITCH)
        self._owed: deque[tuple[float, asyncio.StreamWriter, str]] = deque()  # when, to whom
        # channels whose caller hangs up as the next INFO arrives (recorded race: the
        # hangup events come before uuid_send_info's -ERR reply)
        self.hangup_on_info: set[str] = set()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        # the event names each connection subscribed to (``event plain ...``): FreeSWITCH
        # sends a connection only those
        self._subscribed: dict[asyncio.StreamWriter, set[str]] = {}
        self._rec = _recorded(recordings)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1, on ``port`` (0: one the OS picks)."""
        # a large limit: one command may carry a multi-megabyte INFO body
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, limit=1 << 24)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop(self) -> None:
        """Break every Event Socket connection (FreeSWITCH restarting, network loss)."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def garble(self, frame: bytes) -> None:
        """Send ``frame`` as it is to every connection: not FreeSWITCH, a damaged stream."""
        for writer in self._writers:
            writer.write(frame)

    async def wait_for(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Poll ``condition`` until true; ``TimeoutError`` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.005)

    @property
    def connected(self) -> bool:
        return bool(self._writers)

    def commands(self, prefix: str = "") -> list[str]:
        return [command for _, command in self.received if command.startswith(prefix)]

    # -- the caller's side -------------------------------------------------------------

    async def park(
        self,
        did: str = "15550001000",
        headers: Mapping[str, str | list[str]] | None = None,
        caller: str = "+16505550100",
        digits: str | None = None,
        info_enabled: bool = True,
    ) -> str:
        """A new call parked by the dialplan: emits its CHANNEL_PARK; returns its UUID.

        A header given a list was sent that many times. ``info_enabled=False``: the dialplan
        did not set ``fs_send_unsupported_info``.
        """
        channel = Channel(
            uuid=str(uuidlib.uuid4()),
            did=did,
            caller=caller,
            call_id=f"{uuidlib.uuid4().hex[:16]}@ringcx",
            headers={k: [v] if isinstance(v, str) else v for k, v in (headers or {}).items()},
            digits=digits,
        )
        self.channels[channel.uuid] = channel
        park = self._rec.park
        # as recorded (inbound-digits-timeout.esl): an X- header's later values are
        # sip_h_<Name>-1, -2, ...; every header's values are one sip_i_ variable, ARRAY-joined
        extra = "".join(
            f"variable_sip_h_{name}{f'-{n}' if n else ''}: {_encode(value)}\n"
            for name, values in channel.headers.items()
            if name.lower().startswith("x-")
            for n, value in enumerate(values)
        ) + "".join(
            f"variable_sip_i_{name.lower().replace('-', '_')}: {_encode(_joined(values))}\n"
            for name, values in channel.headers.items()
        )
        park = park.replace(b"variable_switch_r_sdp: ", extra.encode() + b"variable_switch_r_sdp: ")
        if not info_enabled:
            park = re.sub(rb"^variable_fs_send_unsupported_info: .*\n", b"", park, flags=re.M)
        self._emit(channel, park)
        return channel.uuid

    async def caller_hangup(self, uuid: str) -> None:
        """RingCX (the caller) sends BYE: running media is cut, the channel is destroyed."""
        self._caller_gone(self.channels[uuid])

    def _caller_gone(self, channel: Channel) -> None:
        if channel.state == "gone":
            return
        for event_uuid in list(channel.pending):
            self._emit(channel, self._rec.cut_done, app_uuid=event_uuid)
        channel.pending.clear()
        self._gone(channel, "NORMAL_CLEARING", self._rec.caller_park_done, self._rec.caller_hangup)

    def vanish(self, uuid: str) -> None:
        """The channel ends while no controller is connected: nobody hears about it."""
        self.channels[uuid].state = "gone"

    async def press(self, uuid: str, digit: str) -> None:
        """The caller sends a DTMF digit (no collect_digits running)."""
        self._emit(self.channels[uuid], self._dtmf(digit))

    # -- the Event Socket --------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        self.connections += 1
        writer.write(self._rec.auth_request)
        authed = False
        try:
            while True:
                data = await reader.readuntil(b"\n\n")
                command = data.decode().rstrip("\n")
                self.received.append((time.perf_counter(), command))
                if not authed:
                    if command != f"auth {self.password}":
                        for frame in self._rec.auth_refused:  # -ERR invalid, then goodbye
                            writer.write(frame)
                        break
                    authed = True
                    writer.write(self._rec.auth_ok)
                    self._writers.append(writer)
                    continue
                if self.mute:
                    continue
                if self.reply_delay or self._owed:
                    self._answer_later(writer, command)
                else:
                    self._command(writer, command)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if writer in self._writers:
                self._writers.remove(writer)
            self._subscribed.pop(writer, None)
            writer.close()

    def _answer_later(self, writer: asyncio.StreamWriter, command: str) -> None:
        """Answer ``reply_delay`` from now, but never before a command received earlier:
        FreeSWITCH runs a connection's commands one after another."""
        loop = asyncio.get_running_loop()
        self._owed.append((loop.time() + self.reply_delay, writer, command))
        if len(self._owed) == 1:
            loop.call_at(self._owed[0][0], self._answer_owed)

    def _answer_owed(self) -> None:
        """The first owed is due (its timer fired); those after it that are due follow."""
        loop = asyncio.get_running_loop()
        while self._owed:
            _, writer, command = self._owed.popleft()
            self._command(writer, command)
            if self._owed and self._owed[0][0] > loop.time():
                loop.call_at(self._owed[0][0], self._answer_owed)
                return

    def _command(self, writer: asyncio.StreamWriter, command: str) -> None:
        first, *lines = command.split("\n")
        headers = dict(line.split(": ", 1) for line in lines if ": " in line)
        verb, _, rest = first.partition(" ")
        if verb == "event":
            self._subscribed[writer] = set(rest.split()[1:])
            writer.write(self._rec.events_ok)
        elif verb == "api":
            writer.write(self._api_reply(self._api(rest)))
        elif verb == "bgapi":
            job = headers["Job-UUID"]
            writer.write(self._rec.bgapi_ok.replace(b"job-answer", job.encode()))
            body = self._api(rest)
            job_frame = self._rec.job.replace(b"job-answer", job.encode())
            job_frame = re.sub(
                rb"Job-Command: \S+", b"Job-Command: " + rest.split()[0].encode(), job_frame
            )
            self._broadcast(self._with_body(job_frame, body.encode()))
        elif verb == "sendmsg":
            channel = self.channels.get(rest)
            if channel is None or channel.state == "gone":
                writer.write(
                    self._rec.sendmsg_missing.replace(self._rec.missing_uuid, rest.encode())
                )
                return
            writer.write(self._rec.sendmsg_ok)
            self._execute(channel, headers)
        else:
            raise AssertionError(f"the double has no recording for {command!r}")

    def _api(self, command: str) -> str:
        name, _, args = command.partition(" ")
        words = args.split(" ")
        channel = self.channels.get(words[0]) if words and words[0] else None
        alive = channel is not None and channel.state != "gone"
        match name:
            case "global_setvar":
                key, _, value = args.partition("=")
                self.global_vars[key] = value
                return "+OK\n"
            case "global_getvar":
                return self.global_vars.get(args, "")
            case "uptime":  # seconds since FreeSWITCH started
                return self._rec.uptime
            case "show":
                return self._channel_listing()
            case "uuid_setvar":
                return self._rec.setvar_ok if alive else self._rec.setvar_missing
            case "uuid_answer":
                if not alive:
                    return self._rec.answer_missing
                assert channel is not None
                if channel.state == "parked":
                    channel.state = "answered"
                    self._emit(channel, self._rec.answer)
                return "+OK\n"
            case "uuid_send_info":
                if channel is not None and channel.uuid in self.hangup_on_info:
                    self._caller_gone(channel)
                    alive = False
                if not alive:
                    return "-ERR Operation Failed\n"
                assert channel is not None
                body = args.split(" ", 3)[3]
                assert body.startswith("'") and body.endswith("'"), body
                text = _unquote(body[1:-1])
                channel.infos.append(json.loads(text))
                return "+OK Success\n"
            case "uuid_kill":
                if not alive:
                    return "-ERR No such channel!\n"
                assert channel is not None
                cause = words[1] if len(words) > 1 else "NORMAL_CLEARING"
                ending = (
                    (self._rec.early_kill_park_done, self._rec.early_kill_hangup)
                    if channel.state == "parked"  # before answer: the caller got 480
                    else (self._rec.kill_park_done, self._rec.kill_hangup)
                )
                asyncio.get_running_loop().call_soon(self._gone, channel, cause, *ending)
                return "+OK\n"
        raise AssertionError(f"the double has no recording for api {command!r}")

    def _execute(self, channel: Channel, headers: dict[str, str]) -> None:
        app, arg, event_uuid = (
            headers["execute-app-name"],
            headers.get("execute-app-arg", ""),
            headers["Event-UUID"],
        )
        if app == "respond":
            assert arg in self._rec.respond, f"NOT RECORDED: respond {arg}"
            done, park_done, hangup = self._rec.respond[arg]
            self._emit(channel, done, app_uuid=event_uuid)
            self._gone(channel, _header(hangup, "Hangup-Cause"), park_done, hangup)
            return
        done = {
            "playback": self._rec.playback_done,
            "speak": self._rec.speak_done,
            "play_and_get_digits": self._rec.digits_done,
        }[app]
        channel.pending[event_uuid] = app
        asyncio.get_running_loop().call_later(
            self.media_seconds, self._media_done, channel, event_uuid, done, arg
        )

    def _media_done(self, channel: Channel, event_uuid: str, done: bytes, arg: str) -> None:
        if channel.pending.pop(event_uuid, None) is None:
            return  # the caller's BYE already cut it
        if done is self._rec.digits_done:
            variable = arg.split(" ")[7]
            if channel.digits:
                self._emit(channel, self._dtmf(channel.digits))
                done = done.replace(
                    b"variable_bot_digit: 7", f"variable_{variable}: {channel.digits}".encode()
                )
            else:  # it timed out: read_result failure, no digits variable
                done = self._rec.digits_timeout
        self._emit(channel, done, app_uuid=event_uuid)

    def _dtmf(self, digit: str) -> bytes:
        return self._rec.dtmf.replace(b"DTMF-Digit: 7", f"DTMF-Digit: {digit}".encode())

    def _gone(self, channel: Channel, cause: str, park_done: bytes, hangup: bytes) -> None:
        if channel.state == "gone":
            return
        channel.state = "gone"
        channel.hangup_cause = cause
        recorded_cause = _header(hangup, "Hangup-Cause").encode()
        self._emit(channel, park_done.replace(recorded_cause, cause.encode()))
        self._emit(channel, hangup.replace(recorded_cause, cause.encode()))

    def _channel_listing(self) -> str:
        rows = [
            {**self._rec.channel_row, "uuid": c.uuid, "dest": c.did, "initial_dest": c.did}
            for c in self.channels.values()
            if c.state != "gone"
        ]
        if not rows:
            return self._rec.no_channels  # not the same JSON layout as with rows (recorded)
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":")) + "\n"

    # -- frames ------------------------------------------------------------------------

    def _api_reply(self, body: str) -> bytes:
        return self._with_body(self._rec.api_response, body.encode(), outer_only=True)

    @staticmethod
    def _with_body(frame: bytes, body: bytes, outer_only: bool = False) -> bytes:
        """``frame`` with its (inner, for events) body replaced, Content-Length recomputed."""
        head, _, rest = frame.partition(b"\n\n")
        if outer_only:
            rest = body
        else:
            inner_head, _, _ = rest.rstrip(b"\n").partition(b"\n\n")
            inner_head = re.sub(rb"\nContent-Length: \d+$", b"", inner_head)
            rest = inner_head + b"\nContent-Length: %d\n\n" % len(body) + body
        head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(rest), head)
        return head + b"\n\n" + rest

    def _emit(self, channel: Channel, frame: bytes, app_uuid: str | None = None) -> None:
        """Send a recorded event about ``channel`` with its identities substituted."""
        head, _, body = frame.partition(b"\n\n")
        recorded_uuid = _header(body, "Unique-ID")
        body = body.replace(recorded_uuid.encode(), channel.uuid.encode())
        if app_uuid is not None:
            recorded_app = _header(body, "Application-UUID")
            body = body.replace(recorded_app.encode(), app_uuid.encode())
        for name, value in (
            ("Caller-Destination-Number", channel.did),
            ("variable_sip_req_user", channel.did),
            ("variable_sip_call_id", _encode(channel.call_id)),
            ("variable_sip_i_call_id", _encode(channel.call_id)),
            ("Caller-Caller-ID-Number", _encode(channel.caller)),
            ("Event-Date-Timestamp", str(time.time_ns() // 1000)),
        ):
            body = re.sub(
                rb"^" + name.encode() + rb": .*$", f"{name}: {value}".encode(), body, flags=re.M
            )
        head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head)
        self._broadcast(head + b"\n\n" + body)

    def _broadcast(self, frame: bytes) -> None:
        """Send an event to every connection that subscribed to its name."""
        start = frame.index(b"\nEvent-Name: ") + len(b"\nEvent-Name: ")
        name = frame[start : frame.index(b"\n", start)].decode()
        for writer in self._writers:
            if name in self._subscribed.get(writer, ()):
                writer.write(frame)
