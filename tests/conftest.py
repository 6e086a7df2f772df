"""Shared test configuration: markers and the settings that name optional real parts."""

from __future__ import annotations

import pytest

MARKERS = {
    "kamailio": "starts the real Kamailio from Debian's packages on loopback",
    "sipp": "drives calls with the real SIPp (sip-tester) on loopback",
    "docker": "starts containers with testcontainers on a private Docker network",
    "freeswitch": (
        "needs a real FreeSWITCH: set IVAGATE_TEST_FREESWITCH_IMAGE (a Docker image) "
        "or IVAGATE_TEST_FREESWITCH_BIN (a freeswitch binary)"
    ),
    "ansible": "runs ansible-playbook against a container target",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
