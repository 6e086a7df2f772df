"""Shared test configuration: markers and the settings that name optional real parts."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from support import bots
from support.fs_node import LiveNode

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


@pytest.fixture(autouse=True)
def _test_bots_start_unseen() -> None:
    """The test bots (support.bots) keep what happened to them on their classes: each test
    reads only its own calls."""
    for bot in (bots.Recording, *(getattr(bots, name) for name in bots.__all__)):
        bot.seen.clear()


# A failing test on a real FreeSWITCH shows what FreeSWITCH logged meanwhile: a failure seen
# once in CI then says who hung up which leg, and why, without a rerun.
_LOG_START = pytest.StashKey[dict[str, int]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    nodes = {
        name: value
        for name, value in getattr(item, "funcargs", {}).items()
        if isinstance(value, LiveNode)
    }
    if report.when == "setup":
        item.stash[_LOG_START] = {name: node.log_size() for name, node in nodes.items()}
    elif report.when == "call" and report.failed:
        start = item.stash.get(_LOG_START, {})
        for name, node in nodes.items():
            report.sections.append(
                (f"FreeSWITCH log ({name})", node.log_since(start.get(name, 0))[-20000:])
            )
    return report
