"""The live suite: the real Kamailio edge, the real FreeSWITCH behind it, the controller on it.

All three run on loopback as in production (kamailio.cfg and the freeswitch/ tree as shipped,
each as a process); the controller runs in the test's own event loop so a test can read its
call records. Each module gets its own edge and FreeSWITCH; each test its own controller, so
a test's routing and timers are its own and nothing it leaves behind reaches the next one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from ivagate.controller import Controller
from support.controller import TEST_BOTS, running_controllers
from support.edge import Edge, EdgeSetup, write_certificates
from support.fs_node import LiveNode, found_freeswitch

# The emulator may not have taken in the 200 OK yet when FreeSWITCH sends an INFO (its loop
# is this busy one): bots send none before FreeSWITCH has the ACK (support.bots.Recording).
WAIT_FOR_ACK = {name: {"wait_for_ack": True} for name in TEST_BOTS}


@pytest.fixture(scope="module")
def freeswitch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A real FreeSWITCH on this tree, accepting calls from the edge's address only."""
    with found_freeswitch(tmp_path_factory.mktemp("freeswitch")) as node:
        yield node


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, freeswitch: LiveNode) -> Iterator[Edge]:
    """The edge as shipped, dispatching to ``freeswitch`` only."""
    tls_dir = write_certificates(tmp_path_factory.mktemp("edge-tls"))
    setup = EdgeSetup(nodes=[freeswitch.uri], tls_dir=tls_dir)
    with Edge(tmp_path_factory.mktemp("edge"), setup) as running:
        yield running


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """A sentence spoken by Debian's espeak-ng, as mono 16-bit WAVs at 8 and 16 kHz (sox
    resamples), by rate."""
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is missing: scripts/install-deps installs it"
    work = tmp_path_factory.mktemp("speech")
    spoken = work / "spoken.wav"
    subprocess.run(["espeak-ng", "-w", str(spoken), "Hello, this is the bot speaking."], check=True)
    wavs = {rate: work / f"speech-{rate}.wav" for rate in (8000, 16000)}
    # its trailing quiet cut, so that the reply's last frame is speech the caller must hear
    trim = ["reverse", "silence", "1", "0.02", "1%", "reverse"]
    for rate, wav in wavs.items():
        sox = ["sox", str(spoken), "-r", str(rate), "-c", "1", "-b", "16", str(wav), *trim]
        subprocess.run(sox, check=True)
    return wavs


@pytest.fixture
async def start_controller(
    freeswitch: LiveNode, edge: Edge
) -> AsyncIterator[Callable[..., Awaitable[Controller]]]:
    """``await start_controller(**sections)``: a controller on ``freeswitch`` (settings as in
    ``support.controller``), returned once it has opened the node's ready gate; stopped
    (drained, calls ended) after the test."""
    port, password = freeswitch.esl_port, freeswitch.esl_password
    async with running_controllers(port, password, call={"bot_options": WAIT_FOR_ACK}) as start:
        yield start
