"""Running ivagate's site.yml against a container target: the pieces tests/ansible uses.

Docker objects are named ``ivagate-ansible-<image tag>-<session>`` and labelled
``ivagate=ansible``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import DockerException
from docker.models.containers import Container
from tests.support.recordings import ESL_RECORDINGS

__all__ = [
    "ANSIBLE_DIR",
    "API_TOKEN",
    "BASE_IMAGE",
    "BIN",
    "ESL_PASSWORD",
    "FIRST_APPLY",
    "LABELS",
    "OPERATOR_KEY",
    "REPO",
    "REPORT_TOKEN",
    "SESSION",
    "STAND_IN_PORT",
    "TARGET_IMAGE",
    "Applied",
    "Run",
    "Site",
    "Target",
    "ansible_env",
    "base_image",
    "docker_client",
    "kit_wheels",
    "make_site",
    "serve_esl_double",
    "snapshot_sources",
    "start_target",
]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent
BASE_IMAGE = "ivagate/debian:bookworm-slim"
# The mark of a module that provisions a bare host: its first apply installs everything, which
# takes longer than the suite's usual limit on a loaded machine.
FIRST_APPLY = pytest.mark.timeout(1200)
TARGET_IMAGE = "ivagate-ansible-target"  # tagged with what it is built from
LABELS = {"ivagate": "ansible"}
SESSION = uuid.uuid4().hex[:8]
ESL_PASSWORD = "test-esl-secret"
API_TOKEN = "test-api-token"
REPORT_TOKEN = "test-report-token"  # the edges' INFO reports to the controllers
OPERATOR_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC4J8/+59I8X1x6zlv1tMCsvNjpzxtJwSOTYIGhFXesf op@test"
)
STAND_IN_PORT = 5090  # inside the target's own network namespace
_BUILT = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")  # not sources
ESL_PORT = 8021  # the event socket the controller role's settings name
ESL_DOUBLE_DIR = "/opt/ivagate-test-esl"
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


@dataclass(frozen=True)
class Target:
    container: Container
    address: str  # the container's address on the public network (the edge's address)
    gateway: str  # this machine's address there: RingCX and the operator
    media_address: str  # the container's address on the private media network
    media_gateway: str  # this machine's address there: a source not on the allowlist


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    changed: int
    failed: int


@dataclass(frozen=True)
class Site:
    target: Target
    inventory: Path
    sources: Path  # snapshot of the repository's config trees and package
    log_dir: Path

    def play(self, *args: str, extra: dict[str, Any] | None = None, name: str = "run") -> Run:
        """Runs site.yml on the target; the recap gives the change and failure counts."""
        command = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), "site.yml", *args]
        if extra is not None:
            extra_file = self.log_dir / f"{name}.json"
            extra_file.write_text(json.dumps(extra))
            command += ["-e", f"@{extra_file}"]
        done = subprocess.run(
            command,
            cwd=ANSIBLE_DIR,
            capture_output=True,
            text=True,
            env=ansible_env(),
            check=False,
        )
        output = done.stdout + done.stderr
        (self.log_dir / f"{name}.log").write_text(output)
        recap = RECAP.findall(output)
        assert recap, f"no PLAY RECAP in ansible-playbook output:\n{output[-3000:]}"
        return Run(
            returncode=done.returncode,
            output=output,
            changed=sum(int(row[2]) for row in recap),
            failed=sum(int(row[4]) for row in recap),
        )

    def exec(self, *command: str) -> str:
        """Runs a command in the target and returns its output; it must succeed."""
        code, output = self.target.container.exec_run(list(command))
        text = output.decode(errors="replace")
        assert code == 0, f"{command} exited {code}: {text}"
        return text

    def rpc(self, method: str, *params: object) -> object:
        """Calls the edge's JSON-RPC from inside the target (it listens on loopback only)."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
        code = (
            "import urllib.request as u, sys; "
            "print(u.urlopen(u.Request('http://127.0.0.1:8060/RPC', data=sys.argv[1].encode()))"
            ".read().decode())"
        )
        reply = json.loads(self.exec("python3", "-c", code, body))
        assert "error" not in reply, reply
        return reply.get("result")

    def api(self, path: str) -> Any:
        """GETs ``path`` from the controller's HTTP API inside the target (loopback only)."""
        code = (
            "import urllib.request as u, sys; "
            "print(u.urlopen(u.Request('http://127.0.0.1:8088' + sys.argv[1], "
            "headers={'Authorization': 'Bearer ' + sys.argv[2]})).read().decode())"
        )
        return json.loads(self.exec("python3", "-c", code, path, API_TOKEN))

    def command_lines(self) -> str:
        """The command line of every process on the target, one a line, as ``ps`` shows them."""
        each = "for p in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$p; echo; done"
        return self.exec("sh", "-c", each)

    def install_kit(self, wheels: Path) -> str:
        """Installs the conformance kit from ``wheels`` (``kit_wheels``) in a virtualenv of its
        own on the target, as an operator would beside a node; returns its ``ivagate-kit``."""
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(wheels, arcname="ivagate-kit-wheels")
        self.target.container.put_archive("/opt", archive.getvalue())
        self.exec("python3", "-m", "venv", "/opt/ivagate-kit")
        self.exec(
            "/opt/ivagate-kit/bin/pip", "install", "--quiet", "--no-index",
            "--find-links", "/opt/ivagate-kit-wheels", "ivagate-kit",
        )  # fmt: skip
        return "/opt/ivagate-kit/bin/ivagate-kit"


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(Path("/tmp") / f"ivagate-ansible-{SESSION}"),
    )
    return env


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        pytest.skip(f"Docker is not available: {exc}")
    return client


def base_image() -> str:
    """The project's Debian base image (``scripts/make-base-image``), built if missing."""
    subprocess.run([REPO / "scripts" / "make-base-image"], check=True, capture_output=True)
    return BASE_IMAGE


@contextlib.contextmanager
def start_target(image: str, tag: str) -> Iterator[Target]:
    """A fresh host: ``image`` + systemd (``target.Dockerfile``, tagged ``TARGET_IMAGE:tag``),
    on a public bridge network of its own and a private media network."""
    client = docker_client()
    target_image = f"{TARGET_IMAGE}:{tag}"
    client.images.build(
        path=str(REPO / "tests" / "ansible"),
        dockerfile="target.Dockerfile",
        tag=target_image,
        buildargs={"BASE_IMAGE": image},
        labels=LABELS,
        rm=True,
    )
    name = f"ivagate-ansible-{tag}-{SESSION}"
    public = client.networks.create(name, driver="bridge", labels=LABELS)
    # No masquerading on the media network: a packet this machine sends from its address
    # there keeps that source (the firewall test's outsider) instead of becoming the
    # allowlisted public gateway.
    media = client.networks.create(
        f"{name}-media",
        driver="bridge",
        labels=LABELS,
        options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
    )
    try:
        container = client.containers.run(
            target_image,
            name=name,
            hostname="ivagate-target",
            detach=True,
            network=name,
            labels=LABELS,
            # systemd as PID 1 without --privileged: its cgroups read-only, /run on tmpfs.
            # NET_ADMIN only for nftables in the container's own network namespace.
            cap_add=["NET_ADMIN"],
            tmpfs={"/run": "", "/run/lock": ""},
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}},
        )
        try:
            media.connect(container)
            container.reload()
            networks = container.attrs["NetworkSettings"]["Networks"]
            public.reload()
            media.reload()
            yield Target(
                container=container,
                address=networks[name]["IPAddress"],
                gateway=public.attrs["IPAM"]["Config"][0]["Gateway"],
                media_address=networks[f"{name}-media"]["IPAddress"],
                media_gateway=media.attrs["IPAM"]["Config"][0]["Gateway"],
            )
        finally:
            container.remove(force=True)
    finally:
        media.remove()
        public.remove()


def make_site(target: Target, work: Path, site_vars: Mapping[str, Any]) -> Site:
    """An inventory naming the target as both edge and media node, with ``site_vars`` over
    the values every test site shares."""
    sources = snapshot_sources(work / "src")
    host_vars = {"ivagate_address": target.address}
    shared: dict[str, Any] = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,  # the container's user is root already
        "kamailio_source_dir": str(sources / "kamailio"),
        "freeswitch_source_dir": str(sources / "freeswitch"),
        "controller_source_dir": str(sources),
        # this checkout's own wheelhouse: the default one in ~/.cache is shared by every
        # checkout on the machine, and holds one ivagate wheel per version number
        "controller_wheelhouse": str(REPO / "run" / "ansible-wheelhouse"),
        # This machine plays RingCX and the operator.
        "common_operators": [{"name": "operator", "sudo": True, "ssh_keys": [OPERATOR_KEY]}],
        "common_nftables_admin_sources": [f"{target.gateway}/32"],
        "common_nftables_sip_sources": [f"{target.gateway}/32"],
        "kamailio_allowlist": [f"{target.gateway}/32"],
        "kamailio_tls_self_signed_demo": True,
        "kamailio_tls_self_signed_name": "edge.ivagate.test",
        "freeswitch_esl_password": ESL_PASSWORD,
        "controller_esl_password": ESL_PASSWORD,
        "controller_api_token": API_TOKEN,
        "kamailio_report_token": REPORT_TOKEN,
        "controller_edge_token": REPORT_TOKEN,
    }
    host = target.container.name
    inventory = {
        "all": {
            "vars": shared | dict(site_vars),
            "children": {
                "edge": {"hosts": {host: host_vars}},
                "media": {"hosts": {host: host_vars}},
            },
        }
    }
    path = work / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return Site(target, path, sources, work)


def kit_wheels(into: Path) -> Path:
    """The kit's wheel and its dependencies' (``scripts/fetch-wheels``) in ``into``, built
    without an index: the controller role ships no kit, so the test brings its own."""
    subprocess.run([REPO / "scripts" / "fetch-wheels"], check=True, capture_output=True)
    dependencies = REPO / "run" / "wheels" / "kit"
    for wheel in dependencies.glob("*.whl"):
        shutil.copy2(wheel, into)
    with tempfile.TemporaryDirectory() as scratch:  # pip builds in the tree it is given
        source = shutil.copytree(REPO / "kit", Path(scratch) / "kit", ignore=_BUILT)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-index", "--no-deps",
             "--find-links", str(dependencies), "--wheel-dir", str(into), str(source)],
            check=True, capture_output=True,
        )  # fmt: skip
    return into


def snapshot_sources(into: Path) -> Path:
    """Copies what the roles read, so edits made while the test runs cannot change it."""
    for tree in ("kamailio", "freeswitch", "control"):
        shutil.copytree(REPO / tree, into / tree, ignore=_BUILT)
    shutil.copy2(REPO / "pyproject.toml", into / "pyproject.toml")
    return into


def serve_esl_double(target: Target) -> None:
    """Runs the kit's ESL double (``ivagate_kit/esl_double.py``, standard library only, playing
    FreeSWITCH 1.10.12's recorded event socket) in the target on 127.0.0.1:8021 with the site's
    password, where the controller the roles install expects FreeSWITCH."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(REPO / "kit" / "ivagate_kit" / "esl_double.py", "esl_double.py")
        tar.add(ESL_RECORDINGS, "esl")
    target.container.exec_run(["mkdir", "-p", ESL_DOUBLE_DIR])
    assert target.container.put_archive(ESL_DOUBLE_DIR, archive.getvalue())
    serve = (
        "import asyncio, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from esl_double import EslDouble\n"
        "async def main():\n"
        "    recordings = Path(sys.argv[1], 'esl')\n"
        "    await EslDouble(recordings, password=sys.argv[2]).start(int(sys.argv[3]))\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())"
    )
    command = ["python3", "-c", serve, ESL_DOUBLE_DIR, ESL_PASSWORD, str(ESL_PORT)]
    target.container.exec_run(command, detach=True)


@dataclass(frozen=True)
class Applied:
    first: Run
    second: Run
