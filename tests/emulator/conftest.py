"""Fixtures for the emulator tests: the recorded FreeSWITCH SIP messages."""

from __future__ import annotations

import pytest

from support.recordings import RECORDINGS

SIP_RECORDING = RECORDINGS / "sip" / "srtp-call-as-seen-by-caller.sip"


@pytest.fixture(scope="session")
def recorded_messages() -> list[bytes]:
    """The five messages FreeSWITCH sent to a caller, as bytes (``=====`` separates them)."""
    return [chunk for chunk in SIP_RECORDING.read_bytes().split(b"=====\n") if chunk.strip()]
