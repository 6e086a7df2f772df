"""The tree on a real FreeSWITCH: loads clean, parks SRTP calls for the controller, fails fast;
the caller and FreeSWITCH hear each other over SRTP.

Skipped unless IVAGATE_TEST_FREESWITCH_BIN or IVAGATE_TEST_FREESWITCH_IMAGE names a FreeSWITCH
(conftest.live_node starts it with entrypoint.sh). The caller is the project's RingCX emulator
sending straight to the node with the X-Edge-Transport header the edge would add; the test
plays the controller over the event socket with the controller's own adapter (ivagate.esl).
Tests share one node and run in file order: the first checks the node as it started.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fs_esl import esl_session, parked, set_gate

from ivagate.esl import EslClient
from ivagate.info import encode_info, send_info_command
from ivagate_kit import CallPlan, CallReport, run_call
from ivagate_kit.audio import read_wav, tone_power
from support.fs_node import LiveNode

pytestmark = pytest.mark.freeswitch


@pytest.fixture
async def esl(live_node: LiveNode) -> AsyncIterator[EslClient]:
    async with esl_session(live_node) as client:
        yield client


def call(
    node: LiveNode, transport_header: str, **plan: Any
) -> tuple[str, asyncio.Task[CallReport]]:
    """Start one emulated RingCX call as the edge relays it (with the header it adds): DID, task."""
    did = f"1555{secrets.randbelow(10**7):07d}"
    headers = {"X-Edge-Transport": transport_header, "X-Bot-Id": "demo"}
    target = CallPlan(
        target=node.sip, transport="udp", did=did, headers=headers, timeout=20, **plan
    )
    return did, asyncio.create_task(run_call(target))


async def test_tree_loads_clean_and_node_starts_not_ready(
    esl: EslClient, live_node: LiveNode
) -> None:
    """No ERR line on load, profile ivagate RUNNING, node not ready until the controller says so."""
    status = await esl.api("sofia status")
    [profile] = [line for line in status.splitlines() if line.split()[:2] == ["ivagate", "profile"]]
    assert "RUNNING" in profile, status
    assert live_node.sip.split(":")[0] in profile
    assert live_node.log_lines("ERR") == []
    # unset: FreeSWITCH answers an api command with no output "-ERR no reply"
    assert (await esl.api("global_getvar ivagate_ready")).strip() == "-ERR no reply"


async def test_srtp_offer_is_parked_answered_savp_and_info_arrives_as_json(
    esl: EslClient, live_node: LiveNode
) -> None:
    """SRTP offer: parked for the controller, answered RTP/SAVP, uuid_send_info arrives as JSON."""
    await set_gate(esl)
    did, task = call(live_node, "udp", srtp=True, bye="final")
    channel = await parked(esl, did)
    uuid = channel["uuid"]
    assert (await esl.api(f"uuid_getvar {uuid} fs_send_unsupported_info")).strip() == "true"
    assert (await esl.api(f"uuid_getvar {uuid} sip_h_X-Bot-Id")).strip() == "demo"
    assert (await esl.api(f"uuid_answer {uuid}")).startswith("+OK")
    local_sdp = await esl.api(f"uuid_getvar {uuid} rtp_local_sdp_str")
    assert "RTP/SAVP" in local_sdp and "a=crypto:" in local_sdp, local_sdp
    body = encode_info(
        {"intent": "done", "text": 'it\'s "quoted" \\ here'}, final=True, max_bytes=16384
    )
    assert (await esl.api(send_info_command(uuid, body))).startswith("+OK")
    report = await task
    assert report.ok, report.to_dict()
    assert report.invite_status == 200
    assert [(i.content_type, i.json) for i in report.infos] == [
        ("application/json", json.loads(body.text))
    ]


async def test_tls_call_offering_plain_rtp_is_refused_488(
    esl: EslClient, live_node: LiveNode
) -> None:
    """X-Edge-Transport: tls with a plain RTP offer: uuid_answer fails and the caller gets 488."""
    await set_gate(esl)
    did, task = call(live_node, "tls", srtp=False, expect=488)
    channel = await parked(esl, did)
    assert (await esl.api(f"uuid_answer {channel['uuid']}")).startswith("-ERR")
    report = await task
    assert report.invite_status == 488, report.to_dict()


@pytest.mark.parametrize(("value", "lease"), [("", 60), ("false", 60), ("true", -1)])
async def test_node_not_ready_answers_503_at_once(
    esl: EslClient, live_node: LiveNode, value: str, lease: float
) -> None:
    """ivagate_ready unset or false (drained), or the lease past (a dead controller): the caller
    gets 503 and nothing is parked."""
    await set_gate(esl, value, lease)
    did, task = call(live_node, "udp", expect=503)
    report = await task
    assert report.invite_status == 503, report.to_dict()
    rows = json.loads(await esl.api("show channels as json")).get("rows") or []
    assert not [r for r in rows if r.get("dest") == did]


async def test_invite_from_outside_the_edge_is_refused(esl: EslClient, live_node: LiveNode) -> None:
    """A source outside IVAGATE_FS_EDGE_CIDRS gets 403 (auth-calls off) even on a ready node."""
    await set_gate(esl)
    did, task = call(live_node, "udp", local_host="127.0.0.3", expect=403)
    report = await task
    assert report.invite_status == 403, report.to_dict()
    rows = json.loads(await esl.api("show channels as json")).get("rows") or []
    assert not [r for r in rows if r.get("dest") == did]


async def test_caller_audio_both_ways_over_srtp(
    esl: EslClient, live_node: LiveNode, tmp_path: Path
) -> None:
    """The emulated caller and FreeSWITCH hear each other over SDES-SRTP: FreeSWITCH records
    the caller's 440 Hz tone, the caller hears FreeSWITCH's 1000 Hz tone for its 1.5 s, and no
    packet fails authentication either way."""
    await set_gate(esl)
    did, task = call(live_node, "udp", srtp=True, bye=3.0, play="tone:440:-10", tones=[440, 1000])
    uuid = (await parked(esl, did))["uuid"]
    heard_by_node = tmp_path / "node.wav"
    for command in (
        f"uuid_answer {uuid}",
        f"uuid_setvar {uuid} RECORD_READ_ONLY true",
        f"uuid_record {uuid} start {heard_by_node}",
        f"uuid_broadcast {uuid} tone_stream://%(1500,0,1000) aleg",
    ):
        assert (await esl.api(command)).startswith("+OK"), command
    report = await task
    assert report.ok, report.to_dict()
    media = report.media
    assert media is not None and media.srtp and media.srtp_failures == 0
    assert media.tone_power[1000] > 0.9 and media.tone_power[440] < 0.05
    assert 1.3 < media.heard_seconds < 1.7
    for _ in range(50):  # the recording is complete once the channel is gone
        if (await esl.api(f"uuid_exists {uuid}")).strip() == "false":
            break
        await asyncio.sleep(0.1)
    samples = read_wav(heard_by_node)
    assert len(samples) > 8000 and tone_power(samples, 8000, 440) > 0.9
