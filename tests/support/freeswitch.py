"""A real FreeSWITCH for the tests and benchmarks that need one, found without a setting when
it is installed, and started on this project's tree the way production starts it.

Looked for in this order: ``IVAGATE_TEST_FREESWITCH_BIN`` (a binary) or
``IVAGATE_TEST_FREESWITCH_IMAGE`` (a Docker image); ``freeswitch`` on PATH; FreeSWITCH's default
prefix, ``/usr/local/freeswitch/bin/freeswitch``. Tests that run FreeSWITCH in a container take
the image, or else package the binary found into one with ``scripts/freeswitch-image`` (as an
operator would package a FreeSWITCH they built).
"""

from __future__ import annotations

import functools
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from testcontainers.core.container import DockerContainer

__all__ = ["CONF_DIR", "SKIP_REASON", "LiveNode", "find_binary", "find_image", "live_freeswitch"]

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "freeswitch"  # the media node's tree
DEFAULT_BINARY = Path("/usr/local/freeswitch/bin/freeswitch")
HOST_IMAGE = "ivagate/freeswitch:host"

SKIP_REASON = (
    "needs a real FreeSWITCH 1.10 with the modules of freeswitch/autoload_configs/modules.conf.xml:"
    " none on PATH or at /usr/local/freeswitch/bin/freeswitch; install one there, or set "
    "IVAGATE_TEST_FREESWITCH_BIN (a binary) or IVAGATE_TEST_FREESWITCH_IMAGE (a Docker image)"
)


def find_binary() -> str | None:
    """The FreeSWITCH binary to run, or None (an image may still be configured)."""
    named = os.environ.get("IVAGATE_TEST_FREESWITCH_BIN")
    if named:
        return named
    if os.environ.get("IVAGATE_TEST_FREESWITCH_IMAGE"):
        return None  # the image was asked for
    on_path = shutil.which("freeswitch")
    if on_path:
        return on_path
    return str(DEFAULT_BINARY) if os.access(DEFAULT_BINARY, os.X_OK) else None


@functools.cache
def find_image() -> str | None:
    """A FreeSWITCH image: the one named, else one packaged from the binary found, else None."""
    named = os.environ.get("IVAGATE_TEST_FREESWITCH_IMAGE")
    if named:
        return named
    binary = find_binary()
    if binary is None:
        return None
    done = subprocess.run(
        [REPO / "scripts" / "freeswitch-image", binary, HOST_IMAGE],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/freeswitch-image {binary} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return HOST_IMAGE


@dataclass
class LiveNode:
    """A running FreeSWITCH on loopback: where to call it and how to reach its event socket."""

    sip: str  # "host:port" of profile ivagate
    esl_port: int
    esl_password: str
    log: Path
    pid: int | None = None  # the FreeSWITCH process, when it runs here rather than in a container

    def log_lines(self, level: str) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if f"[{level}]" in line]


def free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, alive: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive():
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log file)"
    raise AssertionError(f"FreeSWITCH's event socket {host}:{port} never opened; log:\n{tail}")


@contextmanager
def run_binary(
    binary: str, conf_dir: Path, env: dict[str, str], esl_port: int, *, state: Path, log: Path
) -> Iterator[int]:
    """entrypoint.sh with IVAGATE_FS_BIN: FreeSWITCH as a child process; yields its pid (the
    script execs it)."""
    env = env | {"IVAGATE_FS_BIN": binary, "IVAGATE_FS_STATE_DIR": str(state)}
    env["IVAGATE_FS_RUN_DIR"] = str(state / "run")
    process = subprocess.Popen(
        [str(conf_dir / "entrypoint.sh")],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", esl_port, lambda: process.poll() is None, log)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def run_image(
    image: str, conf_dir: Path, env: dict[str, str], esl_port: int, log_dir: Path
) -> Iterator[None]:
    """The image with this tree mounted and entrypoint.sh as its entrypoint (README.md's recipe)."""
    env = env | {
        "IVAGATE_FS_STATE_DIR": "/tmp/ivagate-fs",
        "IVAGATE_FS_RUN_DIR": "/tmp/ivagate-fs/run",
    }
    container = (
        DockerContainer(image)
        .with_volume_mapping(str(conf_dir), "/etc/ivagate/freeswitch", "ro")
        .with_volume_mapping(str(log_dir), str(log_dir), "rw")
        .with_kwargs(
            network_mode="host",  # loopback addresses, as beside a real controller
            entrypoint=["/etc/ivagate/freeswitch/entrypoint.sh"],
            labels={"ivagate.component": "freeswitch"},
        )
        .with_name(f"ivagate-freeswitch-test-{secrets.token_hex(4)}")
    )
    for key, value in env.items():
        container = container.with_env(key, value)
    container.start()
    try:
        wait_for_port("127.0.0.1", esl_port, lambda: True, log_dir / "freeswitch.log")
        yield
    finally:
        container.stop()


@contextmanager
def live_freeswitch(
    binary: str | None,
    image: str | None,
    work: Path,
    conf_dir: Path = CONF_DIR,
    rtp_ports: int = 200,
) -> Iterator[LiveNode]:
    """FreeSWITCH on this tree (or on ``conf_dir``, a copy with changes: benchmarks), on a
    random 127.x address, its files under ``work``; ``rtp_ports`` (two a call) bound the calls
    it holds at once (FreeSWITCH refuses more with 488).

    The edge is 127.0.0.1 only, so calls from 127.0.0.1 are accepted and others refused.
    """
    sip_ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    log_dir = work / "log"
    log_dir.mkdir()
    log_dir.chmod(0o777)  # the image may run FreeSWITCH as its own user
    rtp_min = random.randrange(20000, 65536 - rtp_ports, 200)
    env = {
        "IVAGATE_FS_SIP_IP": sip_ip,
        "IVAGATE_FS_SIP_PORT": str(free_port(sip_ip, socket.SOCK_DGRAM)),
        "IVAGATE_FS_RTP_PORT_MIN": str(rtp_min),
        "IVAGATE_FS_RTP_PORT_MAX": str(rtp_min + rtp_ports - 1),
        "IVAGATE_FS_EDGE_CIDRS": "127.0.0.1/32",
        "IVAGATE_FS_ESL_PORT": str(free_port("127.0.0.1")),
        "IVAGATE_FS_ESL_PASSWORD": secrets.token_urlsafe(18),
        "IVAGATE_FS_LOG_DIR": str(log_dir),
    }
    node = LiveNode(
        sip=f"{sip_ip}:{env['IVAGATE_FS_SIP_PORT']}",
        esl_port=int(env["IVAGATE_FS_ESL_PORT"]),
        esl_password=env["IVAGATE_FS_ESL_PASSWORD"],
        log=log_dir / "freeswitch.log",
    )
    if binary:
        with run_binary(
            binary, conf_dir, env, node.esl_port, state=work / "state", log=node.log
        ) as pid:
            node.pid = pid
            yield node
    else:
        with run_image(str(image), conf_dir, env, node.esl_port, log_dir):
            yield node
