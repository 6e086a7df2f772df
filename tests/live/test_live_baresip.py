"""Live call audio (issue 13) with Debian's baresip as the caller instead of the kit's
emulator: baresip -> real edge -> real FreeSWITCH -> controller -> the ``Listen`` bot, chosen
by the DID (baresip adds no X-Bot-Id), and back. Assertions are on the audio each side
heard, on what SRTP the call used, and on how baresip took the final intent."""

from __future__ import annotations

from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from live_calls import voiced_seconds

from ivagate.bots.base import Outcome
from ivagate.controller import Controller
from ivagate_kit.audio import read_wav, rms_dbfs, tone, tone_power, write_wav
from support import bots
from support.baresip import Baresip, caller_nat
from support.controller import ended_record
from support.edge import CALLER, Edge
from support.fs_node import LiveNode

pytestmark = [pytest.mark.kamailio, pytest.mark.freeswitch]

StartController = Callable[..., Awaitable[Controller]]

DID = "15550002000"
RATE = 16000  # the bot's stream; baresip's side is PCMU at 8 kHz
# longer than the call lasts: baresip hangs up once its WAV ends, the bot must finish first
SEND_SECONDS = 15
# SDES-SRTP, mandatory (RTP/SAVP with a=crypto) over TLS; plain RTP over UDP
MEDIAENC = {"tls": "srtp-mand", "udp": None}


@pytest.fixture
async def controller(
    start_controller: StartController, freeswitch: LiveNode, edge: Edge, speech: dict[int, Path]
) -> Controller:
    """The DID routed to ``Listen``, whose reply is the speech; the edge reports how the
    caller answered each INFO."""
    listen = {"wait_for_ack": True, "rate": RATE, "reply": str(speech[RATE])}
    return await start_controller(
        routing={"dids": {DID: "Listen"}},
        edge=edge.reports_to(freeswitch.host),
        call={"bot_options": {"Listen": listen}},
    )


@pytest.mark.parametrize("transport", ["tls", "udp"])
async def test_baresip_and_the_bot_hear_each_other(
    tmp_path: Path, edge: Edge, controller: Controller, speech: dict[int, Path], transport: str
) -> None:
    """baresip's 440 Hz tone reaches the bot at its level; the bot's espeak-ng sentence
    reaches baresip with its voiced length kept; over TLS the media is SDES-SRTP
    (``srtp-mand``: RTP/SAVP and a=crypto), over UDP plain RTP. The final intent reaches
    baresip, which answers 488: baresip 1.0.0 takes INFO only as DTMF or media control, so
    the call ends Failed, as README says for a RingCX that refuses the final intent."""
    send = tmp_path / "tone.wav"
    write_wav(send, tone(440, SEND_SECONDS, -6))
    tls_dir = edge.setup.tls_dir
    assert tls_dir is not None
    caller = Baresip(tmp_path, send, mediaenc=MEDIAENC[transport], cafile=tls_dir / "tls.crt")
    target = edge.tls if transport == "tls" else edge.sip
    with caller_nat(edge.tls_port), caller:
        caller.dial(f"sip:{DID}@{target};transport={transport}")
        record = await ended_record(controller)
        caller.stop()  # closes its recording
    log = caller.log()

    assert (record.transport, record.source.split(":")[0]) == (transport, CALLER), record
    assert record.srtp is (transport == "tls"), record
    assert ("SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in log) is record.srtp, log
    assert record.outcome is Outcome.FAILED, (record, bots.Listen.seen, log)
    assert [(i.final, i.result, i.sip_status) for i in record.infos] == [(True, "reply", 488)]
    assert record.error is not None and "RingCX answered 488" in record.error, record
    assert '"intent":"Listened","final":true' in log.replace(" ", ""), log

    (_, heard), (_, played, _) = bots.Listen.seen[:2]
    samples = array("h", heard)
    assert len(samples) == RATE  # one second
    assert tone_power(samples, RATE, 440) > 0.8
    assert -11 < rms_dbfs(samples) < -7  # the sine peaks at -6 dBFS: -9 dB RMS
    assert played is True

    back = caller.heard()
    expected = voiced_seconds(read_wav(speech[RATE]), 8000)
    said = voiced_seconds(back, 8000)
    assert abs(said - expected) < 0.15 * expected, (said, expected)
    assert tone_power(back, 8000, 440) < 0.05  # the bot's speech, not baresip's own tone
