"""Shared test configuration: markers and the settings that name optional real parts."""

from __future__ import annotations

import os

import pytest

# Ryuk (testcontainers' reaper) is an image pulled from a registry, which may be unreachable;
# every fixture removes what it started instead.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

MARKERS = {
    "kamailio": "starts the real Kamailio from Debian's packages on loopback",
    "sipp": "drives calls with the real SIPp (sip-tester) on loopback",
    "docker": "starts containers with testcontainers on a private Docker network",
    "freeswitch": (
        "needs a real FreeSWITCH: one on PATH or in /usr/local/freeswitch, or named by "
        "IVAGATE_TEST_FREESWITCH_BIN (a binary) or IVAGATE_TEST_FREESWITCH_IMAGE (a Docker image)"
    ),
    "ansible": "runs ansible-playbook against a container target",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
