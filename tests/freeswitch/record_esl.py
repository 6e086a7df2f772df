"""Record what a real FreeSWITCH says on its event socket, in the format of the recordings.

Starts FreeSWITCH on this tree (``support.fs_node.live_freeswitch``: a random 127.x address,
its own event-socket port and password), talks to the event socket over a raw TCP socket, and writes
every byte both ways to ``OUT_DIR/<scenario>.esl`` (format: tests/fixtures/freeswitch-1.10.12/
README.md). Calls are placed with the kit's emulator; what each caller got is printed.

    PYTHONPATH=tests .venv/bin/python tests/freeswitch/record_esl.py OUT_DIR [SCENARIO ...]

Recordings are kept small: one connection each, subscribed like the controller
(``event plain`` + ``SUBSCRIBED_EVENTS``) on a node with no other calls.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

from fs_esl import gate_commands
from multidict import MultiDict

from ivagate.events import SUBSCRIBED_EVENTS
from ivagate_kit import CallPlan, CallReport, run_call
from support.freeswitch import find_binary
from support.fs_node import LiveNode, live_freeswitch

MISSING = "00000000-0000-0000-0000-000000000000"  # a channel UUID that does not exist
WAIT = 15.0  # seconds for any frame awaited


class Recording:
    """One event-socket connection whose every byte is written to an ``.esl`` file."""

    def __init__(
        self, out: BinaryIO, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.out = out
        self.reader = reader
        self.writer = writer
        self.frames: list[bytes] = []  # every frame received, in order
        self.replies: list[bytes] = []  # the command/reply and api/response frames among them
        self.arrived = asyncio.Event()
        self.closed = False
        self._asked = 0  # commands sent that wait for a reply
        self._reading = asyncio.create_task(self._read())

    def _log(self, direction: str, data: bytes) -> None:
        self.out.write(f"{direction} {len(data)} {time.time():.3f}\n".encode() + data + b"\n")

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readuntil(b"\n\n")
                length = next(
                    (
                        int(line.split(b": ", 1)[1])
                        for line in head.split(b"\n")
                        if line.startswith(b"Content-Length: ")
                    ),
                    0,
                )
                frame = head + await self.reader.readexactly(length)
                self._log("<<<", frame)
                self.frames.append(frame)
                if _header(frame, "Content-Type") in ("command/reply", "api/response"):
                    self.replies.append(frame)
                self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            self.arrived.set()

    async def send(self, command: str) -> None:
        data = f"{command}\n\n".encode()
        self._log(">>>", data)
        self.writer.write(data)
        await self.writer.drain()

    async def wait(self, wanted: Callable[[bytes], bool]) -> bytes:
        """The first frame received (from the start) that ``wanted`` accepts."""
        async with asyncio.timeout(WAIT):
            while True:
                found = next((f for f in self.frames if wanted(f)), None)
                if found is not None:
                    return found
                if self.closed:
                    raise EOFError("the event socket closed")
                self.arrived.clear()
                await self.arrived.wait()

    async def until_closed(self) -> None:
        """Wait for FreeSWITCH to close the connection."""
        async with asyncio.timeout(WAIT):
            await self._reading

    async def command(self, command: str) -> str:
        """Send ``command``; its reply (Reply-Text, or the api/response body)."""
        await self.send(command)
        mine = self._asked
        self._asked += 1
        await self.wait(lambda _: len(self.replies) > mine)
        head, _, body = self.replies[mine].partition(b"\n\n")
        return body.decode() if body else _header(head, "Reply-Text")

    async def open_gate(self) -> None:
        """What the controller does once connected: ivagate_ready and its lease."""
        for command in gate_commands():
            await self.command(f"api {command}")

    async def event(self, name: str, header: str = "", value: str = "") -> bytes:
        """The first event ``name`` (with ``header: value``, if given) received."""

        def wanted(frame: bytes) -> bool:
            body = frame.partition(b"\n\n")[2]
            return _header(body, "Event-Name") == name and (
                not header or _header(body, header) == value
            )

        return await self.wait(wanted)

    async def bgapi(self, command: str) -> bytes:
        job = str(uuidlib.uuid4())
        await self.command(f"bgapi {command}\nJob-UUID: {job}")
        return await self.event("BACKGROUND_JOB", "Job-UUID", job)

    async def execute(self, uuid: str, app: str, arg: str) -> str:
        """``sendmsg`` as the controller sends it; the Event-UUID it carried."""
        event_uuid = str(uuidlib.uuid4())
        await self.command(
            f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: {app}\n"
            f"execute-app-arg: {arg}\nEvent-UUID: {event_uuid}"
        )
        return event_uuid


def _header(block: bytes, name: str) -> str:
    for line in block.partition(b"\n\n")[0].split(b"\n"):
        key, _, value = line.decode().partition(": ")
        if key == name:
            return value
    return ""


@asynccontextmanager
async def connection(
    node: LiveNode, out: Path, password: str | None = None
) -> AsyncIterator[Recording]:
    """A recorded connection, authenticated with ``password`` (the node's by default) and
    subscribed as the controller subscribes when that is accepted."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.esl_port)
    with out.open("wb") as file:
        rec = Recording(file, reader, writer)
        await rec.wait(lambda f: _header(f, "Content-Type") == "auth/request")
        reply = await rec.command(f"auth {password or node.esl_password}")
        if reply.startswith("+OK"):
            await rec.command("event plain " + " ".join(SUBSCRIBED_EVENTS))
        try:
            yield rec
        finally:
            writer.close()
            await rec.until_closed()


def place_call(
    node: LiveNode, headers: list[tuple[str, str]], **plan: Any
) -> asyncio.Task[CallReport]:
    """An emulated RingCX call as the edge relays it; ``headers`` may repeat a name."""
    did = f"1555{secrets.randbelow(10**7):07d}"
    all_headers = MultiDict([("X-Edge-Transport", "udp"), ("X-Bot-Id", "demo"), *headers])
    # a MultiDict where CallPlan wants a dict: the INVITE is built from its .items(), repeats too
    target = CallPlan(target=node.sip, did=did, headers=all_headers, timeout=20, **plan)  # type: ignore[arg-type]
    return asyncio.create_task(run_call(target))


async def parked(rec: Recording) -> str:
    """The UUID of the next call the dialplan parks (the node takes calls first)."""
    park = await rec.event("CHANNEL_PARK")
    return _header(park.partition(b"\n\n")[2], "Unique-ID")


def show(name: str, report: CallReport) -> None:
    print(
        f"{name}: the caller got {report.invite_status}; BYE from FreeSWITCH: "
        f"{report.bye_from_remote}; INFOs: {len(report.infos)}"
    )


# -- scenarios: one recording each ------------------------------------------------------


async def wrong_password(node: LiveNode, out: Path) -> None:
    async with connection(node, out, password="not-the-password") as rec:
        await rec.until_closed()


async def no_channel(node: LiveNode, out: Path) -> None:
    """Commands about a channel that does not exist, on a node with none."""
    async with connection(node, out) as rec:
        await rec.command("api uptime")
        await rec.command("api show channels as json")
        await rec.command(f"api uuid_answer {MISSING}")
        await rec.command(f"api uuid_setvar {MISSING} fs_send_unsupported_info true")
        await rec.bgapi(f"uuid_answer {MISSING}")
        await rec.execute(MISSING, "playback", "silence_stream://250")


async def digits_timeout(node: LiveNode, out: Path) -> None:
    """An INVITE with X-Dup three times; uuid_setvar; answer; play_and_get_digits with no digit
    (as the controller sends it); uuid_kill; bgapi uuid_send_info on the dead channel."""
    async with connection(node, out) as rec:
        await rec.open_gate()
        call = place_call(
            node, [("X-Dup", "first"), ("X-Dup", "second"), ("X-Dup", "third")], bye="never"
        )
        uuid = await parked(rec)
        await rec.command(f"api uuid_setvar {uuid} fs_send_unsupported_info true")
        await rec.bgapi(f"uuid_answer {uuid}")
        event_uuid = await rec.execute(
            uuid,
            "play_and_get_digits",
            r"1 1 1 2000 # silence_stream://250 silence_stream://250 ivagate_digits \d+",
        )
        await rec.event("CHANNEL_EXECUTE_COMPLETE", "Application-UUID", event_uuid)
        await rec.command(f"api uuid_kill {uuid} NORMAL_CLEARING")
        await rec.event("CHANNEL_HANGUP_COMPLETE", "Unique-ID", uuid)
        await rec.bgapi(f"uuid_send_info {uuid} application json '{{}}'")
        show(out.name, await call)


def before_answer(
    ending: Callable[[Recording, str], Awaitable[object]], expect: int
) -> Callable[[LiveNode, Path], Awaitable[None]]:
    """A parked call ended by ``ending`` before it is answered."""

    async def scenario(node: LiveNode, out: Path) -> None:
        async with connection(node, out) as rec:
            await rec.open_gate()
            call = place_call(node, [], expect=expect)
            uuid = await parked(rec)
            await ending(rec, uuid)
            await rec.event("CHANNEL_HANGUP_COMPLETE", "Unique-ID", uuid)
            show(out.name, await call)

    return scenario


async def _respond(rec: Recording, uuid: str, status: str) -> None:
    event_uuid = await rec.execute(uuid, "respond", status)
    await rec.event("CHANNEL_EXECUTE_COMPLETE", "Application-UUID", event_uuid)


SCENARIOS: dict[str, Callable[[LiveNode, Path], Awaitable[None]]] = {
    "inbound-wrong-password": wrong_password,
    "inbound-no-channel": no_channel,
    "inbound-digits-timeout": digits_timeout,
    "inbound-respond-503": before_answer(
        lambda rec, uuid: _respond(rec, uuid, "503 Service Unavailable"), 503
    ),
    "inbound-respond-480": before_answer(
        lambda rec, uuid: _respond(rec, uuid, "480 Temporarily Unavailable"), 480
    ),
    "inbound-kill-before-answer": before_answer(
        lambda rec, uuid: rec.command(f"api uuid_kill {uuid} NORMAL_CLEARING"), 480
    ),
}


async def record(out_dir: Path, names: list[str]) -> None:
    binary = find_binary()
    if binary is None:
        raise SystemExit("no FreeSWITCH binary found (see tests/support/freeswitch.py)")
    with tempfile.TemporaryDirectory() as work, live_freeswitch(binary, None, Path(work)) as node:
        for name in names:
            await SCENARIOS[name](node, out_dir / f"{name}.esl")
            print(f"recorded {out_dir / name}.esl")


if __name__ == "__main__":
    out_dir, *wanted = sys.argv[1:]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(record(Path(out_dir), wanted or list(SCENARIOS)))
