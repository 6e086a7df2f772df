"""Fixtures for the emulator tests: the recorded FreeSWITCH SIP messages."""

from __future__ import annotations

from pathlib import Path

import pytest

# Copied byte for byte from the FreeSWITCH 1.10.12 recordings (sip/ in the shared fixtures).
SIP_RECORDING = Path(__file__).parent / "data" / "srtp-call-as-seen-by-caller.sip"


@pytest.fixture(scope="session")
def recorded_messages() -> list[bytes]:
    """The five messages FreeSWITCH sent to a caller, as bytes (``=====`` separates them)."""
    return [chunk for chunk in SIP_RECORDING.read_bytes().split(b"=====\n") if chunk.strip()]
