"""A real FreeSWITCH on this tree for the live tests, started the way production starts it.

``entrypoint.sh`` runs either a FreeSWITCH binary or, with the tree mounted, a FreeSWITCH image
(host network, as beside a controller): ``support.freeswitch`` finds them. The node gets a
random 127.x address and free ports, so parallel tests never clash. ``LiveNode.restart()``
stops it and starts it again on the same address and ports, as an operator's restart would.
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
from typing import Protocol

import pytest
from testcontainers.core.container import DockerContainer

from .edge import EDGE_HOST, free_port
from .freeswitch import CONF_DIR, SKIP_REASON, find_binary, find_image

__all__ = ["LiveNode", "found_freeswitch", "live_freeswitch"]


class Runner(Protocol):
    """One way of running entrypoint.sh: started and stopped, maybe more than once."""

    def start(self) -> None: ...
    def alive(self) -> bool: ...
    def stop(self) -> None: ...
    @property
    def pid(self) -> int | None: ...


@dataclass
class LiveNode:
    """A running FreeSWITCH on loopback: where to call it and how to reach its event socket."""

    sip: str  # "host:port" of profile ivagate
    esl_port: int
    esl_password: str
    log: Path
    runner: Runner

    @property
    def host(self) -> str:
        """The node's address, where its controller listens for the edge's reports."""
        return self.sip.rpartition(":")[0]

    @property
    def uri(self) -> str:
        """The node as an edge's dispatcher list names it."""
        return f"sip:{self.sip}"

    @property
    def pid(self) -> int | None:
        """FreeSWITCH's process when it runs here, not in a container (for CPU figures)."""
        return self.runner.pid

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        """What FreeSWITCH logged after ``offset`` (a ``log_size()``)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_lines(self, level: str) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if f"[{level}]" in line]

    def start(self) -> None:
        self.runner.start()
        wait_for_port("127.0.0.1", self.esl_port, self.runner.alive, self.log)

    def restart(self) -> None:
        """Stop FreeSWITCH (its calls and global variables go with it), start it again."""
        self.runner.stop()
        self.start()


def wait_for_port(host: str, port: int, alive: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive():
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log file)"
    raise AssertionError(f"FreeSWITCH's event socket {host}:{port} never opened; log:\n{tail}")


class BinaryRunner:
    """entrypoint.sh with IVAGATE_FS_BIN: FreeSWITCH as a child process of the tests."""

    def __init__(self, binary: str, conf_dir: Path, env: dict[str, str], state: Path) -> None:
        env = env | {"IVAGATE_FS_BIN": binary, "IVAGATE_FS_STATE_DIR": str(state)}
        self.env = {**os.environ, **env, "IVAGATE_FS_RUN_DIR": str(state / "run")}
        self.conf_dir = conf_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """FreeSWITCH's own (entrypoint.sh execs it)."""
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.conf_dir / "entrypoint.sh")],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class ImageRunner:
    """The image with this tree mounted and entrypoint.sh as its entrypoint (README.md's recipe)."""

    pid = None  # FreeSWITCH runs in a container

    def __init__(self, image: str, conf_dir: Path, env: dict[str, str], log_dir: Path) -> None:
        self.image = image
        self.conf_dir = conf_dir
        self.env = env | {
            "IVAGATE_FS_STATE_DIR": "/tmp/ivagate-fs",
            "IVAGATE_FS_RUN_DIR": "/tmp/ivagate-fs/run",
        }
        self.log_dir = log_dir
        self.container: DockerContainer | None = None

    def start(self) -> None:
        container = (
            DockerContainer(self.image)
            .with_volume_mapping(str(self.conf_dir), "/etc/ivagate/freeswitch", "ro")
            .with_volume_mapping(str(self.log_dir), str(self.log_dir), "rw")
            .with_kwargs(
                network_mode="host",  # loopback addresses, as beside a real controller
                entrypoint=["/etc/ivagate/freeswitch/entrypoint.sh"],
                labels={"ivagate.component": "freeswitch"},
            )
            .with_name(f"ivagate-freeswitch-test-{secrets.token_hex(4)}")
        )
        for key, value in self.env.items():
            container = container.with_env(key, value)
        self.container = container.start()

    def alive(self) -> bool:
        return self.container is not None

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()
            self.container = None


@contextmanager
def live_freeswitch(
    binary: str | None,
    image: str | None,
    work: Path,
    conf_dir: Path = CONF_DIR,
    rtp_ports: int = 200,
    *,
    edge_cidrs: str = f"{EDGE_HOST}/32",
    settings: Mapping[str, str] | None = None,
) -> Iterator[LiveNode]:
    """FreeSWITCH on this tree (or on ``conf_dir``, a copy with changes: benchmarks), on a
    random 127.x address, its files under ``work``; ``rtp_ports`` (two a call) bound the calls
    it holds at once (FreeSWITCH refuses more with 488).

    The edge is ``edge_cidrs`` (EDGE_HOST only by default), so calls from there are accepted
    and others refused; ``settings`` adds IVAGATE_FS_* settings (TLS, capacity).
    """
    sip_ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    log_dir = work / "log"
    log_dir.mkdir()
    log_dir.chmod(0o777)  # the image may run FreeSWITCH as its own user
    rtp_min = random.randrange(20000, 65536 - rtp_ports, 200)
    env = {
        "IVAGATE_FS_SIP_IP": sip_ip,
        "IVAGATE_FS_SIP_PORT": str(free_port(sip_ip)),
        "IVAGATE_FS_RTP_PORT_MIN": str(rtp_min),
        "IVAGATE_FS_RTP_PORT_MAX": str(rtp_min + rtp_ports - 1),
        "IVAGATE_FS_EDGE_CIDRS": edge_cidrs,
        "IVAGATE_FS_ESL_PORT": str(free_port("127.0.0.1")),
        "IVAGATE_FS_MEDIA_PORT": str(free_port("127.0.0.1")),
        "IVAGATE_FS_ESL_PASSWORD": secrets.token_urlsafe(18),
        "IVAGATE_FS_LOG_DIR": str(log_dir),
        **(settings or {}),
    }
    runner: Runner = (
        BinaryRunner(binary, conf_dir, env, work / "state")
        if binary
        else ImageRunner(str(image), conf_dir, env, log_dir)
    )
    node = LiveNode(
        sip=f"{sip_ip}:{env['IVAGATE_FS_SIP_PORT']}",
        esl_port=int(env["IVAGATE_FS_ESL_PORT"]),
        esl_password=env["IVAGATE_FS_ESL_PASSWORD"],
        log=log_dir / "freeswitch.log",
        runner=runner,
    )
    try:
        node.start()
        yield node
    finally:
        runner.stop()


@contextmanager
def found_freeswitch(work: Path) -> Iterator[LiveNode]:
    """The FreeSWITCH ``support.freeswitch`` finds, live on this tree; a skip saying how to
    provide one when none is found."""
    binary = find_binary()
    image = None if binary else find_image()
    if not (binary or image):
        pytest.skip(SKIP_REASON)
    # NOTICE: each call's answers and hangups (who, which cause), shown when a test fails
    with live_freeswitch(binary, image, work, settings={"IVAGATE_FS_LOG_LEVEL": "notice"}) as node:
        yield node
