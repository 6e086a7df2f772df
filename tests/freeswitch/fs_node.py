"""A real FreeSWITCH on this tree for the live tests, started the way production starts it.

``entrypoint.sh`` runs either a FreeSWITCH binary or, with the tree mounted, a FreeSWITCH image
(host network, as beside a controller): ``support.freeswitch`` finds them. The node gets a
random 127.x address and free ports, so parallel tests never clash.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fs_tree import CONF_DIR
from testcontainers.core.container import DockerContainer

__all__ = ["LiveNode", "live_freeswitch"]


@dataclass
class LiveNode:
    """A running FreeSWITCH on loopback: where to call it and how to reach its event socket."""

    sip: str  # "host:port" of profile ivagate
    esl_port: int
    esl_password: str
    log: Path

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
    binary: str, env: dict[str, str], esl_port: int, state: Path, log: Path
) -> Iterator[None]:
    """entrypoint.sh with IVAGATE_FS_BIN: FreeSWITCH as a child process of the tests."""
    env = env | {"IVAGATE_FS_BIN": binary, "IVAGATE_FS_STATE_DIR": str(state)}
    env["IVAGATE_FS_RUN_DIR"] = str(state / "run")
    process = subprocess.Popen(
        [str(CONF_DIR / "entrypoint.sh")],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", esl_port, lambda: process.poll() is None, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def run_image(image: str, env: dict[str, str], esl_port: int, log_dir: Path) -> Iterator[None]:
    """The image with this tree mounted and entrypoint.sh as its entrypoint (README.md's recipe)."""
    env = env | {
        "IVAGATE_FS_STATE_DIR": "/tmp/ivagate-fs",
        "IVAGATE_FS_RUN_DIR": "/tmp/ivagate-fs/run",
    }
    container = (
        DockerContainer(image)
        .with_volume_mapping(str(CONF_DIR), "/etc/ivagate/freeswitch", "ro")
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
    *,
    edge_cidrs: str = "127.0.0.1/32",
    env: Mapping[str, str] | None = None,
) -> Iterator[LiveNode]:
    """FreeSWITCH on this tree, on a random 127.x address, its files under ``work``.

    The edge is ``edge_cidrs`` (127.0.0.1 only by default), so calls from there are accepted
    and others refused; ``env`` adds IVAGATE_FS_* settings (TLS, capacity).
    """
    sip_ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    log_dir = work / "log"
    log_dir.mkdir()
    log_dir.chmod(0o777)  # the image may run FreeSWITCH as its own user
    rtp_min = random.randrange(20000, 60000, 200)
    env = {
        "IVAGATE_FS_SIP_IP": sip_ip,
        "IVAGATE_FS_SIP_PORT": str(free_port(sip_ip, socket.SOCK_DGRAM)),
        "IVAGATE_FS_RTP_PORT_MIN": str(rtp_min),
        "IVAGATE_FS_RTP_PORT_MAX": str(rtp_min + 199),
        "IVAGATE_FS_EDGE_CIDRS": edge_cidrs,
        "IVAGATE_FS_ESL_PORT": str(free_port("127.0.0.1")),
        "IVAGATE_FS_ESL_PASSWORD": secrets.token_urlsafe(18),
        "IVAGATE_FS_LOG_DIR": str(log_dir),
        **(env or {}),
    }
    node = LiveNode(
        sip=f"{sip_ip}:{env['IVAGATE_FS_SIP_PORT']}",
        esl_port=int(env["IVAGATE_FS_ESL_PORT"]),
        esl_password=env["IVAGATE_FS_ESL_PASSWORD"],
        log=log_dir / "freeswitch.log",
    )
    if binary:
        running = run_binary(binary, env, node.esl_port, work / "state", node.log)
    else:
        running = run_image(str(image), env, node.esl_port, log_dir)
    with running:
        yield node
