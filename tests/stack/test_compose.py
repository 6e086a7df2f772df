"""``scripts/stack`` (``make up`` / ``make down``) on the shipped docker-compose.yml.

With a real FreeSWITCH found (``support.freeswitch``), the whole shipped stack runs and the
demo bot answers the emulated call. Without one, FreeSWITCH is replaced by a stand-in media
node (``compose.stand-in.yml``) that plays a fixed script: that checks the rest - images, .env
handling, the edge, the network, the emulator profile. Each runs under a project name, network
and host ports of the test's own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tests.support.freeswitch import SKIP_REASON, find_image
from tests.support.stack import REPO, SESSION, StackImages

STAND_IN = Path(__file__).with_name("compose.stand-in.yml")


def compose_missing() -> bool:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return plugin.returncode != 0 and shutil.which("docker-compose") is None


pytestmark = pytest.mark.docker

needs_compose = pytest.mark.skipif(
    compose_missing(),
    reason="needs Docker Compose: the docker-compose package (1.29+) or the docker compose plugin",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_range(count: int) -> int:
    """The first of ``count`` consecutive UDP ports free on every host address right now
    (Docker publishes the media node's RTP range on them)."""
    for _ in range(50):
        first = random.randrange(40000, 60000, count)
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {count} consecutive free UDP ports in 40000-60000")


def free_net_prefix() -> str:
    """Three octets of a /24 that overlaps no Docker network (the stack pins addresses in it)."""
    used = [
        ipaddress.ip_network(config["Subnet"])
        for net in docker.from_env().networks.list()
        for config in (net.attrs.get("IPAM") or {}).get("Config") or []
        if "." in config.get("Subnet", "")
    ]
    candidates = [
        f"172.31.{n}"
        for n in range(100, 250)
        if not any(ipaddress.ip_network(f"172.31.{n}.0/24").overlaps(net) for net in used)
    ]
    if not candidates:
        pytest.skip("no free /24 in 172.31.100-249 for the stack's network: remove unused networks")
    return random.choice(candidates)


@pytest.fixture
def stack_env(stack_images: StackImages, tmp_path: Path) -> Iterator[dict[str, str]]:
    """scripts/stack's environment: own settings file, ports and network; torn down after."""
    settings = tmp_path / "stack.env"
    env = {
        **os.environ,
        "IVAGATE_ENV_FILE": str(settings),
        "COMPOSE_FILE": f"docker-compose.yml:{STAND_IN}",
        "COMPOSE_PROJECT_NAME": f"ivagate-stack-{SESSION}",
        "IVAGATE_FREESWITCH_IMAGE": stack_images.kit,
        "IVAGATE_NET_PREFIX": free_net_prefix(),
        "IVAGATE_SIP_PORT": str(free_port()),
        "IVAGATE_TLS_PORT": str(free_port()),
        "IVAGATE_API_PORT": str(free_port()),
        "IVAGATE_TLS_DIR": str(tmp_path / "tls"),
    }
    rtp = free_udp_range(20)  # FreeSWITCH takes 2 a call, 4 while a bot streams
    env |= {"IVAGATE_RTP_PORT_MIN": str(rtp), "IVAGATE_RTP_PORT_MAX": str(rtp + 19)}
    env["IVAGATE_EMULATE_PORT"] = env["IVAGATE_TLS_PORT"]
    try:
        yield env
    finally:
        subprocess.run([REPO / "scripts" / "stack", "down"], env=env, cwd=REPO, check=False)


def stack_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``scripts/stack up`` (what ``make up`` runs) with ``env``, its output captured."""
    return subprocess.run(
        [REPO / "scripts" / "stack", "up"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


@needs_compose
@pytest.mark.parametrize(
    ("bot", "infos"),
    [
        (
            "demo",
            [
                '{"event": "digit", "digit": null}',
                '{"intent": "NoInput", "digit": null, "final": true}',
            ],
        ),
        # live audio: the parrot says the caller's 1.5 s tone back, then idles out
        ("parrot", ['{"event": "listening"}', '{"intent": "Parrot", "turns": 1, "final": true}']),
    ],
)
def test_make_up_runs_a_built_in_bot_on_a_real_freeswitch(
    stack_env: dict[str, str], bot: str, infos: list[str]
) -> None:
    """The shipped stack as ``make up`` runs it: the emulated call reaches the controller and
    the bot (``IVAGATE_EMULATE_BOT``), whose INFOs pass every check."""
    image = find_image()
    if image is None:
        pytest.skip(SKIP_REASON)
    env = stack_env | {
        "COMPOSE_FILE": "docker-compose.yml",
        "IVAGATE_FREESWITCH_IMAGE": image,
        "IVAGATE_EMULATE_BOT": bot,
    }

    up = stack_up(env)

    output = up.stdout + up.stderr
    assert up.returncode == 0, output[-5000:]
    assert "Result: PASS" in output
    for info in infos:
        assert info in output


@needs_compose
def test_make_up_places_one_passing_call(stack_env: dict[str, str], tmp_path: Path) -> None:
    """``scripts/stack up`` makes the settings, starts the stack with the stand-in node; its
    call passes every check."""
    up = stack_up(stack_env)

    output = up.stdout + up.stderr
    assert up.returncode == 0, output[-5000:]
    assert "Result: PASS" in output
    assert '{"intent": "done", "final": true}' in output
    settings = Path(stack_env["IVAGATE_ENV_FILE"]).read_text()
    assert "IVAGATE_ESL__PASSWORD=\n" not in settings, "a password was generated"
    assert (tmp_path / "tls" / "tls.crt").exists(), "the edge made its self-signed certificate"


def test_make_up_without_freeswitch_says_what_to_provide(tmp_path: Path) -> None:
    """Without a FreeSWITCH, ``make up`` stops at once naming the ways to give one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("IVAGATE_FREESWITCH_IMAGE", "SIGNALWIRE_TOKEN")
    }
    env["IVAGATE_ENV_FILE"] = str(tmp_path / "stack.env")
    env["IVAGATE_HOST_FREESWITCH"] = ""  # nor one installed on this machine
    env["DOCKER_HOST"] = "unix:///nonexistent"  # fail rather than find a local ivagate/freeswitch

    up = stack_up(env)

    assert up.returncode == 2, up.stdout + up.stderr
    assert "IVAGATE_FREESWITCH_IMAGE=<image>" in up.stderr
    assert "SIGNALWIRE_TOKEN=pat_... make up" in up.stderr
    assert "IVAGATE_HOST_FREESWITCH=<binary>" in up.stderr
