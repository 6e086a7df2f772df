"""The greenswitch adapter: large commands, reply timeouts, reconnects, typed events."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator

import pytest

from ivagate.esl import EslClient, EslCommandError, EslDisconnected, EslTimeout
from ivagate.events import ChannelHangupComplete, ChannelPark, EslEvent
from ivagate.info import encode_info, send_info_command
from ivagate.settings import EslSettings
from ivagate_kit.esl_double import EslDouble

MISSING = "00000000-0000-0000-0000-000000000000"  # no such channel


class Listener:
    """Collects what the client reports."""

    def __init__(self) -> None:
        self.events: list[EslEvent] = []
        self.ups = 0
        self.downs = 0
        self.threads: set[int] = set()  # where the news was delivered
        self.broken = False  # esl_event raises, as a buggy controller would

    def esl_connected(self) -> None:
        self.ups += 1

    def esl_disconnected(self) -> None:
        self.downs += 1

    def esl_event(self, event: EslEvent) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(event)
        if self.broken:
            raise RuntimeError("listener bug")


@pytest.fixture
async def client(double: EslDouble) -> AsyncIterator[tuple[EslClient, Listener]]:
    settings = EslSettings(
        port=double.port, password=double.password, reply_timeout=0.5, reconnect_min=0.05
    )
    esl, listener = EslClient(settings), Listener()
    await esl.start(listener)
    await double.wait_for(lambda: esl.connected)
    yield esl, listener
    await esl.close()
    assert not esl.connected


async def test_subscribes_only_to_the_events_it_acts_on(double: EslDouble, client) -> None:
    """The recordings' subscription; CHANNEL_ANSWER comes before uuid_answer's
    BACKGROUND_JOB (recorded), so the answer's SRTP is known when answer() returns."""
    esl, listener = client
    assert double.commands("event") == [
        "event plain CHANNEL_PARK CHANNEL_ANSWER CHANNEL_EXECUTE_COMPLETE "
        "CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB DTMF"
    ]
    uuid = await double.park()
    assert (await esl.bgapi(f"uuid_answer {uuid}")).startswith("+OK")
    assert double.channels[uuid].state == "answered"
    names = [event.name for event in listener.events]
    assert names == ["CHANNEL_PARK", "CHANNEL_ANSWER", "BACKGROUND_JOB"]


async def test_events_arrive_typed_on_the_loop(double: EslDouble, client) -> None:
    """A recorded CHANNEL_PARK reaches the listener as a ChannelPark with decoded fields."""
    _, listener = client
    uuid = await double.park(did="15550004000")
    await double.wait_for(lambda: any(isinstance(e, ChannelPark) for e in listener.events))
    park = next(e for e in listener.events if isinstance(e, ChannelPark))
    assert park.uuid == uuid
    assert park.variable("sip_req_user") == "15550004000"
    assert "\r\n" in park.variable("switch_r_sdp")  # encoded newlines survive the parse


async def test_multi_megabyte_info_goes_out_whole(double: EslDouble, client) -> None:
    """A body far larger than a socket buffer is written whole (greenswitch's send() was not)."""
    esl, _ = client
    uuid = await double.park()
    payload = {"text": "x'\\" * 400_000}
    body = encode_info(payload, final=False, max_bytes=1 << 24)
    assert (await esl.bgapi(send_info_command(uuid, body))).startswith("+OK")
    assert double.channels[uuid].infos == [payload]


async def test_concurrent_commands_keep_their_replies(double: EslDouble, client) -> None:
    """Many concurrent api/bgapi commands each get their own reply."""
    esl, _ = client
    uuids = [await double.park() for _ in range(20)]
    replies = await asyncio.gather(
        *(esl.api(f"uuid_kill {u}") for u in uuids[:10]),
        *(esl.bgapi(f"uuid_answer {u}") for u in uuids[10:]),
        esl.api("uuid_kill 00000000-0000-0000-0000-000000000000"),
    )
    assert replies == ["+OK\n"] * 20 + ["-ERR No such channel!\n"]


async def test_no_reply_to_the_probe_drops_and_reconnects(double: EslDouble, client) -> None:
    """No reply within reply_timeout, nor to the liveness probe sent then: EslTimeout, the
    connection is dropped and re-made."""
    esl, listener = client
    double.mute = True
    with pytest.raises(EslTimeout):
        await esl.api("global_getvar ivagate_ready")
    await double.wait_for(lambda: bool(double.commands("api uptime")))  # unanswered too
    assert listener.downs == 0  # not before the probe's own timeout
    double.mute = False
    await double.wait_for(lambda: listener.downs == 1 and listener.ups == 2 and esl.connected)
    assert double.connections == 2
    assert await esl.api("global_setvar ivagate_ready=true") == "+OK\n"


async def test_a_late_reply_fails_that_command_only(double: EslDouble, client) -> None:
    """A reply later than reply_timeout (a slow api on a busy FreeSWITCH) fails that command
    only: the connection and the other calls' commands stay, and the late reply is taken
    for its own command, not for the next one."""
    esl, listener = client
    timeout = esl.settings.reply_timeout
    double.global_vars.update(slow="late", next="in time")
    other_call = await double.park()
    double.media_seconds = 2 * timeout
    playing = asyncio.ensure_future(esl.execute(other_call, "playback", "hold.wav"))
    await double.wait_for(lambda: bool(double.commands("sendmsg")))
    double.reply_delay = 1.5 * timeout
    slow = asyncio.ensure_future(esl.api("global_getvar slow"))
    await double.wait_for(lambda: bool(double.commands("api global_getvar slow")))
    double.reply_delay = 0  # what comes next is answered after it, as FreeSWITCH does
    with pytest.raises(EslTimeout):
        await slow
    assert await esl.api("global_getvar next") == "in time"
    assert (await playing).application == "playback"
    assert listener.downs == 0 and esl.connected and double.connections == 1
    assert double.commands("api uptime") == ["api uptime"]  # the probe that kept it


async def test_replies_that_keep_coming_keep_the_connection(double: EslDouble, client) -> None:
    """The reply timeout counts from each command, not from the first of a busy spell: for
    three times reply_timeout a reply is always owed, each answered within the timeout (a
    busy FreeSWITCH), and the connection stays."""
    esl, _ = client
    timeout = esl.settings.reply_timeout
    double.reply_delay = 0.6 * timeout
    loop = asyncio.get_running_loop()
    until = loop.time() + 3 * timeout
    sent = []
    while loop.time() < until:
        sent.append(asyncio.ensure_future(esl.api("global_getvar ivagate_ready")))
        await asyncio.sleep(0.1 * timeout)
    replies = await asyncio.gather(*sent)  # EslTimeout or EslDisconnected would raise
    assert len(replies) == len(sent) > 20
    assert esl.connected and double.connections == 1


async def test_runs_in_the_loop_thread(double: EslDouble, client) -> None:
    """greenswitch's reader runs in the asyncio thread: no thread is started, and events
    reach the listener on the loop's own thread."""
    esl, listener = client
    uuids = [await double.park() for _ in range(5)]
    await asyncio.gather(*(esl.bgapi(f"uuid_answer {u}") for u in uuids))
    await double.wait_for(lambda: len(listener.events) >= 10)
    assert listener.threads == {threading.get_ident()}
    assert threading.enumerate() == [threading.main_thread()]


async def test_unreadable_frame_drops_the_connection_and_reconnects(
    double: EslDouble, client
) -> None:
    """A frame whose length is not a number: the waiting command fails with EslDisconnected
    (nothing hangs), the connection is re-made and works."""
    esl, listener = client
    double.mute = True
    pending = asyncio.ensure_future(esl.api("global_getvar ivagate_ready"))
    await double.wait_for(lambda: bool(double.commands("api global_getvar")))
    double.garble(b"Content-Length: many\nContent-Type: text/event-plain\n\n")
    with pytest.raises(EslDisconnected):
        await pending
    double.mute = False
    await double.wait_for(lambda: listener.downs == 1 and listener.ups == 2 and esl.connected)
    assert await esl.api("global_setvar ivagate_ready=true") == "+OK\n"


async def test_listener_failure_keeps_the_connection(double: EslDouble, client) -> None:
    """A listener that raises on an event is logged; the connection and the next events
    are unaffected."""
    esl, listener = client
    listener.broken = True
    await double.park()
    await double.wait_for(lambda: len(listener.events) == 1)
    listener.broken = False
    await double.park()
    await double.wait_for(lambda: len(listener.events) == 2)
    assert listener.downs == 0 and esl.connected


async def test_a_wrong_password_is_refused_and_retried(
    double: EslDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """FreeSWITCH's recorded refusal (``-ERR invalid``, a disconnect notice, then it closes):
    never connected, retried with backoff, logged as an auth failure without the password."""
    caplog.set_level(logging.WARNING, logger="ivagate.esl")
    password = "not-the-password-7f3a"
    settings = EslSettings(
        port=double.port, password=password, reply_timeout=0.5, reconnect_min=0.05
    )
    esl, listener = EslClient(settings), Listener()
    await esl.start(listener)
    await double.wait_for(lambda: double.connections >= 3)
    await esl.close()
    assert listener.ups == 0
    assert caplog.text.count("EslCommandError('auth')") >= 2  # the reply was read, each time
    assert password not in caplog.text


async def test_recorded_replies_about_a_missing_channel(double: EslDouble, client) -> None:
    """What FreeSWITCH answered about a channel that does not exist: the replies come back
    as they are, and ``execute`` fails at once instead of awaiting a completion."""
    esl, _ = client
    assert await esl.api(f"uuid_answer {MISSING}") == "-ERROR\n"
    assert await esl.bgapi(f"uuid_answer {MISSING}") == "-ERROR\n"
    assert await esl.api(f"uuid_setvar {MISSING} fs_send_unsupported_info true") == (
        "-ERR No such channel!\n"
    )
    with pytest.raises(EslCommandError, match=re.escape(f"-ERR invalid session id [{MISSING}]")):
        await asyncio.wait_for(esl.execute(MISSING, "playback", "silence_stream://250"), 5)
    assert re.fullmatch(r"\d+\n", await esl.api("uptime"))  # the liveness probe's answer


async def test_recorded_replies_about_a_channel_that_hung_up(double: EslDouble, client) -> None:
    """After the caller's BYE: ``bgapi uuid_send_info`` and ``sendmsg`` as recorded."""
    esl, _ = client
    uuid = await double.park()
    await double.caller_hangup(uuid)
    body = encode_info({"intent": "late"}, final=True, max_bytes=16384)
    assert await esl.bgapi(send_info_command(uuid, body)) == "-ERR Operation Failed\n"
    with pytest.raises(EslCommandError, match=re.escape(f"-ERR invalid session id [{uuid}]")):
        await asyncio.wait_for(esl.execute(uuid, "playback", "silence_stream://250"), 5)


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        ("404 Not Found", "UNALLOCATED_NUMBER"),
        ("503 Service Unavailable", "NORMAL_TEMPORARY_FAILURE"),
        ("480 Temporarily Unavailable", "NO_USER_RESPONSE"),
        (None, "NORMAL_CLEARING"),  # uuid_kill: the caller got 480
    ],
)
async def test_ending_a_call_before_answer_as_recorded(
    double: EslDouble, client, status: str | None, cause: str
) -> None:
    """``respond <status>`` or ``uuid_kill`` before answer: the recorded hangup cause, and a
    disposition that does not say the caller hung up."""
    esl, listener = client
    uuid = await double.park()
    if status is None:
        assert await esl.api(f"uuid_kill {uuid} NORMAL_CLEARING") == "+OK\n"
    else:
        assert (await esl.execute(uuid, "respond", status)).hangup_cause == cause
    await double.wait_for(
        lambda: any(isinstance(e, ChannelHangupComplete) for e in listener.events)
    )
    hangup = next(e for e in listener.events if isinstance(e, ChannelHangupComplete))
    assert (hangup.uuid, hangup.hangup_cause, hangup.disposition) == (uuid, cause, "send_refuse")
