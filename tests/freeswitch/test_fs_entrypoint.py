"""entrypoint.sh: refuses to start FreeSWITCH without a usable event-socket password.

FreeSWITCH is not installable here, so IVAGATE_FS_BIN points at a small script that records
the arguments and environment it was started with; the real-FreeSWITCH tests run the same
entrypoint with the real binary.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fs_tree import CONF_DIR

ENTRYPOINT = CONF_DIR / "entrypoint.sh"


def start(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run entrypoint.sh with a recording stand-in binary; return the result and its record."""
    record = tmp_path / "started-with"
    binary = tmp_path / "freeswitch"
    binary.write_text(f'#!/bin/sh\n{{ echo "$@"; env; }} > {record}\n')
    binary.chmod(0o755)
    base = {
        "PATH": "/usr/bin:/bin",
        "IVAGATE_FS_BIN": str(binary),
        "IVAGATE_FS_LOG_DIR": str(tmp_path / "log"),
        "IVAGATE_FS_STATE_DIR": str(tmp_path / "state"),
        "IVAGATE_FS_RUN_DIR": str(tmp_path / "run"),
    }
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        check=False,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result, record


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("ClueCon", "well-known default"),
        ("pa ss'word", "may hold only"),
        ("pass<x>", "may hold only"),
    ],
)
def test_refuses_to_start_without_a_usable_password(
    tmp_path: Path, password: str | None, reason: str
) -> None:
    """No password, FreeSWITCH's default, or XML-unsafe characters: exit 64, FreeSWITCH not run."""
    env = {} if password is None else {"IVAGATE_FS_ESL_PASSWORD": password}
    result, record = start(tmp_path, **env)
    assert result.returncode == 64
    assert "IVAGATE_FS_ESL_PASSWORD" in result.stderr
    assert reason in result.stderr
    assert not record.exists()


@pytest.mark.parametrize(
    "cidrs",
    ["10.0.0.0", "10.0.0.0/8,", "10.0.0.0/8/1", "10.*/8", "/8", ",".join(["10.0.0.1/32"] * 33)],
)
def test_refuses_edge_cidrs_freeswitch_would_drop(tmp_path: Path, cidrs: str) -> None:
    """A malformed IVAGATE_FS_EDGE_CIDRS entry, or more than 32, stops the start with a reason."""
    result, record = start(tmp_path, IVAGATE_FS_ESL_PASSWORD="s3cret", IVAGATE_FS_EDGE_CIDRS=cidrs)
    assert result.returncode == 64
    assert "IVAGATE_FS_EDGE_CIDRS" in result.stderr
    assert not record.exists()


def test_starts_freeswitch_in_the_foreground_on_this_tree(tmp_path: Path) -> None:
    """With a password it execs FreeSWITCH on this tree, foreground, no console, no NAT probing."""
    result, record = start(
        tmp_path,
        IVAGATE_FS_ESL_PASSWORD="s3cret",
        IVAGATE_FS_SIP_IP="",
        IVAGATE_FS_SIP_PORT="5090",
        IVAGATE_FS_EDGE_CIDRS="198.51.100.0/24,2001:db8::/32",
    )
    assert result.returncode == 0, result.stderr
    args, *environment = record.read_text().splitlines()
    assert args.split()[:5] == ["-nonat", "-nf", "-nc", "-conf", str(CONF_DIR)]
    assert f"-log {tmp_path / 'log'}" in args
    assert f"-db {tmp_path / 'state' / 'db'}" in args
    assert "IVAGATE_FS_SIP_PORT=5090" in environment
    assert not any(line.startswith("IVAGATE_FS_SIP_IP=") for line in environment), (
        "an empty IVAGATE_FS_* must be unset so vars.xml keeps its default"
    )
    assert (tmp_path / "log").is_dir()
    assert (tmp_path / "state" / "db").is_dir()


def test_refuses_a_directory_without_the_tree(tmp_path: Path) -> None:
    """IVAGATE_FS_CONF_DIR without freeswitch.xml: a clear error, FreeSWITCH not run."""
    result, record = start(
        tmp_path, IVAGATE_FS_ESL_PASSWORD="s3cret", IVAGATE_FS_CONF_DIR=str(tmp_path)
    )
    assert result.returncode == 64
    assert "no freeswitch.xml" in result.stderr
    assert not record.exists()
