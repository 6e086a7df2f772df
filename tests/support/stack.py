"""The stack's images and containers for the testcontainers suite (``tests/stack/``).

Images are built from the repository the way ``make up`` builds them (base image from
``scripts/make-base-image``, Python wheels from ``scripts/fetch-wheels``), and every container
mounts the repository's own ``kamailio/`` or ``freeswitch/`` tree, so the config under test is
the config that ships. Each container class waits for its own readiness in ``start()``.
Docker objects are named ``ivagate-stack-<role>-<session>`` and labelled ``ivagate=stack``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import docker
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import (
    ContainerStatusWaitStrategy,
    ExecWaitStrategy,
    LogMessageWaitStrategy,
)

__all__ = [
    "BASE_IMAGE",
    "LABELS",
    "REPO",
    "SESSION",
    "ControllerContainer",
    "EdgeContainer",
    "EmulatorContainer",
    "EmulatorRun",
    "FreeSwitchContainer",
    "StackContainer",
    "StackImages",
    "StandInContainer",
    "build_images",
    "network_subnet",
    "private_network",
    "stand_in_pair",
]

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "ivagate/debian:bookworm-slim"
LABELS = {"ivagate": "stack"}
SESSION = uuid.uuid4().hex[:8]
SIP_PORT, TLS_PORT, NODE_PORT = 5060, 5061, 5080
STARTUP_TIMEOUT = 60


@dataclass(frozen=True)
class StackImages:
    kamailio: str
    control: str
    kit: str


def build_images() -> StackImages:
    """Make the base image and wheels if missing, then build the edge, control and kit images."""
    for script in ("make-base-image", "fetch-wheels"):
        done = subprocess.run(
            [REPO / "scripts" / script], check=False, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"scripts/{script} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
    build: dict[str, Any] = {
        "buildargs": {"BASE_IMAGE": BASE_IMAGE},
        "labels": LABELS,
        "rm": True,
        "forcerm": True,
        "clean_up": False,  # keep the tag: the next run and `make up` reuse its layers
    }
    kamailio = DockerImage(REPO / "kamailio", tag="ivagate/kamailio:latest", **build).build()
    control, kit = (
        DockerImage(
            REPO, dockerfile_path=f"{name}/Dockerfile", tag=f"ivagate/{name}:latest", **build
        )
        for name in ("control", "kit")
    )
    return StackImages(kamailio=str(kamailio), control=str(control.build()), kit=str(kit.build()))


def private_network() -> Network:
    """A bridge network of the suite's own, named and labelled for ivagate."""
    network = Network(docker_network_kw={"labels": LABELS})
    network.name = f"ivagate-stack-{SESSION}-{uuid.uuid4().hex[:6]}"
    return network


def network_subnet(network: Network) -> str:
    """The CIDR Docker gave ``network``."""
    attrs = docker.from_env().networks.get(network.name).attrs
    subnet: str = attrs["IPAM"]["Config"][0]["Subnet"]
    return subnet


class StackContainer(DockerContainer):
    """A container of the suite, named for its role, on ``network`` unless it joins another's."""

    def __init__(self, image: str, role: str, network: Network | None = None) -> None:
        super().__init__(image, labels=LABELS)
        self.network = network
        self.with_name(f"ivagate-stack-{role}-{SESSION}")
        if network is not None:
            self.with_network(network)

    @property
    def ip(self) -> str:
        """The container's address on the suite's network."""
        assert self.network is not None, "this container shares another one's network"
        container = self.get_wrapped_container()
        container.reload()
        address: str = container.attrs["NetworkSettings"]["Networks"][self.network.name][
            "IPAddress"
        ]
        return address

    def shell(self, script: str) -> Self:
        """Run ``script`` with sh as the container's main process (its address is known inside)."""
        return self.with_kwargs(entrypoint=["sh", "-c"]).with_command([script])

    def halt(self) -> None:
        """Stop the container as an operator would (SIGTERM, then SIGKILL), keeping it for logs."""
        self.get_wrapped_container().stop(timeout=2)

    def logs(self) -> str:
        stdout, stderr = self.get_logs()
        return (stdout + stderr).decode(errors="replace")


class EdgeContainer(StackContainer):
    """The edge image (Kamailio) with this repository's ``kamailio/`` tree mounted.

    Ready once Kamailio answers JSON-RPC on its loopback control listener.

    >>> edge = EdgeContainer(images.kamailio, network, allow=["10.0.0.7"],
    ...                      media_nodes=["sip:10.0.0.9:5080"]).start()  # doctest: +SKIP
    >>> edge.target("tls")  # doctest: +SKIP
    '10.0.0.2:5061'
    """

    def __init__(
        self,
        image: str,
        network: Network,
        *,
        allow: Sequence[str],
        media_nodes: Sequence[str],
        role: str = "edge",
    ) -> None:
        super().__init__(image, role, network)
        self.with_volume_mapping(str(REPO / "kamailio"), "/etc/ivagate/kamailio", "ro")
        self.with_env("IVAGATE_EDGE_ALLOW", " ".join(allow))
        self.with_env("IVAGATE_EDGE_MEDIA_NODES", " ".join(media_nodes))
        self.waiting_for(
            ExecWaitStrategy(["ivagate-edge", "health"])
            .with_startup_timeout(STARTUP_TIMEOUT)
            .with_poll_interval(0.2)
        )

    def target(self, transport: str) -> str:
        return f"{self.ip}:{TLS_PORT if transport == 'tls' else SIP_PORT}"

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call the edge's JSON-RPC (e.g. ``dispatcher.list``) and return its result."""
        code, output = self.exec(["ivagate-edge", "rpc", method, json.dumps(list(params))])
        assert code == 0, output.decode(errors="replace")
        return json.loads(output)["result"]

    def media_node_flags(self) -> dict[str, str]:
        """Dispatcher state of each media node by URI: "A..." active, "I..." out of rotation."""
        records = self.rpc("dispatcher.list")["RECORDS"]
        return {
            target["DEST"]["URI"]: target["DEST"]["FLAGS"]
            for record in records
            for target in record["SET"]["TARGETS"]
        }


class StandInContainer(StackContainer):
    """``ivagate-kit stand-in`` from the kit image: a scripted media node on UDP port 5080.

    Each call gets one INFO naming the node (``{"node": role}``), then the final intent.
    """

    def __init__(self, image: str, network: Network, role: str) -> None:
        super().__init__(image, role, network)
        infos = [json.dumps({"node": role}), json.dumps({"intent": "done", "final": True})]
        info_args = " ".join(f"--info {shlex.quote(info)}" for info in infos)
        # Listen on the container's own address: it is what the Contact header must carry.
        self.shell(
            f'exec ivagate-kit stand-in --listen "$(hostname -i):{NODE_PORT}" --transport udp '
            f"--info-interval 0.3 {info_args}"
        )
        self.waiting_for(
            LogMessageWaitStrategy("stand-in media node on").with_startup_timeout(STARTUP_TIMEOUT)
        )

    @property
    def uri(self) -> str:
        return f"sip:{self.ip}:{NODE_PORT}"


@contextmanager
def stand_in_pair(
    image: str, network: Network, roles: tuple[str, str]
) -> Iterator[tuple[StandInContainer, StandInContainer]]:
    """Two stand-in media nodes for the edge to spread calls over, removed together."""
    with (
        StandInContainer(image, network, roles[0]) as one,
        StandInContainer(image, network, roles[1]) as two,
    ):
        yield one, two


@dataclass(frozen=True)
class EmulatorRun:
    """One ``ivagate-kit emulate --json`` run: its exit status and its report."""

    exit_code: int
    report: dict[str, Any]
    stderr: str

    def node(self) -> str | None:
        """The stand-in media node that answered (from its first INFO), if any."""
        for info in self.report.get("infos", []):
            if isinstance(info.get("json"), dict) and "node" in info["json"]:
                return str(info["json"]["node"])
        return None

    def explain(self) -> str:
        return json.dumps(self.report, indent=1)[-6000:] + self.stderr[-2000:]


class EmulatorContainer(StackContainer):
    """An idle container of the kit image from which ``ivagate-kit emulate`` places calls.

    Its address is the call's source address, so a second one is a second caller.
    """

    def __init__(self, image: str, network: Network, role: str) -> None:
        super().__init__(image, role, network)
        self.with_kwargs(entrypoint=["sleep"]).with_command(["infinity"])
        self.waiting_for(ContainerStatusWaitStrategy().with_startup_timeout(STARTUP_TIMEOUT))

    def call(self, target: str, transport: str, *options: str) -> EmulatorRun:
        """Place one call to ``target`` and return the emulator's report."""
        command = ["ivagate-kit", "emulate", target, "--transport", transport, "--json"]
        command += ["--local-host", self.ip, *options]
        exit_code, (stdout, stderr) = self.get_wrapped_container().exec_run(command, demux=True)
        text = (stdout or b"").decode()
        report: dict[str, Any] = json.loads(text) if text.strip() else {}
        return EmulatorRun(exit_code, report, (stderr or b"").decode(errors="replace"))


class FreeSwitchContainer(StackContainer):
    """An operator-supplied FreeSWITCH image running this repository's ``freeswitch/`` tree.

    Started first; the controller joins its network namespace.
    """

    def __init__(self, image: str, network: Network, *, edge_cidr: str, esl_password: str) -> None:
        super().__init__(image, "freeswitch", network)
        self.with_volume_mapping(str(REPO / "freeswitch"), "/etc/ivagate/freeswitch", "ro")
        self.with_kwargs(entrypoint=["/etc/ivagate/freeswitch/entrypoint.sh"])
        self.with_env("IVAGATE_FS_ESL_PASSWORD", esl_password)
        self.with_env("IVAGATE_FS_EDGE_CIDRS", edge_cidr)
        # Its readiness is the controller's: /readyz needs the event socket connected.
        self.waiting_for(ContainerStatusWaitStrategy().with_startup_timeout(STARTUP_TIMEOUT))

    @property
    def uri(self) -> str:
        return f"sip:{self.ip}:{NODE_PORT}"


class ControllerContainer(StackContainer):
    """``ivagate run`` in the FreeSWITCH container's network namespace, as in production.

    Ready once ``/readyz`` answers 200: connected to FreeSWITCH and taking calls.
    """

    def __init__(self, image: str, freeswitch: FreeSwitchContainer, esl_password: str) -> None:
        super().__init__(image, "controller")
        # The node's namespace instead of a network: the event socket is on its loopback.
        self.with_kwargs(network_mode=f"container:{freeswitch.get_wrapped_container().id}")
        self.with_env("IVAGATE_ESL__PASSWORD", esl_password)
        self.with_env("IVAGATE_ROUTING__BOT_HEADER", "X-Bot-Id")
        self.with_env("IVAGATE_CALL__BOT_OPTIONS", json.dumps({"demo": {"timeout": 1}}))
        self.waiting_for(
            ExecWaitStrategy(
                [
                    "python3",
                    "-c",
                    "import urllib.request as u; "
                    "u.urlopen('http://127.0.0.1:8088/readyz', timeout=2)",
                ]
            )
            .with_startup_timeout(STARTUP_TIMEOUT)
            .with_poll_interval(0.5)
        )
