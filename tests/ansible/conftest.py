"""A fresh Debian host in a container for the Ansible roles, and a way to run the playbook.

The target is the project's base image plus systemd as init (a real server's service manager:
the roles' units, restart policies and limits are exercised as they are in production) and
Python for Ansible's modules. Ansible reaches it through ``docker exec`` (community.docker).
Docker objects are named ``ivagate-ansible-<session>`` and labelled ``ivagate=ansible``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.errors import DockerException
from docker.models.containers import Container

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent
BASE_IMAGE = "ivagate/debian:bookworm-slim"
TARGET_IMAGE = "ivagate-ansible-target:latest"
LABELS = {"ivagate": "ansible"}
SESSION = uuid.uuid4().hex[:8]
ESL_PASSWORD = "test-esl-secret"
API_TOKEN = "test-api-token"
STAND_IN_PORT = 5090  # inside the target's own network namespace
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


@dataclass(frozen=True)
class Target:
    container: Container
    address: str  # the container's address on the public network (the edge's address)
    gateway: str  # this machine's address there: RingCX and the operator
    media_address: str  # the container's address on the private media network


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


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A fresh Debian host: base image + systemd, on a bridge network of its own."""
    client = docker_client()
    subprocess.run([REPO / "scripts" / "make-base-image"], check=True, capture_output=True)
    client.images.build(
        path=str(Path(__file__).parent),
        dockerfile="target.Dockerfile",
        tag=TARGET_IMAGE,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        labels=LABELS,
        rm=True,
    )
    name = f"ivagate-ansible-{SESSION}"
    public = client.networks.create(name, driver="bridge", labels=LABELS)
    media = client.networks.create(f"{name}-media", driver="bridge", labels=LABELS)
    try:
        container = client.containers.run(
            TARGET_IMAGE,
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
            yield Target(
                container=container,
                address=networks[name]["IPAddress"],
                gateway=public.attrs["IPAM"]["Config"][0]["Gateway"],
                media_address=networks[f"{name}-media"]["IPAddress"],
            )
        finally:
            container.remove(force=True)
    finally:
        media.remove()
        public.remove()


def snapshot_sources(into: Path) -> Path:
    """Copies what the roles read, so edits made while the test runs cannot change it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for tree in ("kamailio", "freeswitch", "control"):
        shutil.copytree(REPO / tree, into / tree, ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", into / "pyproject.toml")
    return into


@pytest.fixture(scope="module")
def site(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """An inventory naming the container as both edge and media node."""
    work = tmp_path_factory.mktemp("ansible")
    sources = snapshot_sources(work / "src")
    host_vars = {"ivagate_address": target.address}
    site_vars: dict[str, Any] = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become": False,  # the container's user is root already
        "kamailio_source_dir": str(sources / "kamailio"),
        "freeswitch_source_dir": str(sources / "freeswitch"),
        "controller_source_dir": str(sources),
        # This machine plays RingCX and the operator. The media node is a stand-in run in
        # the target itself, on its private network's address as a real node would be.
        "common_nftables_admin_sources": [f"{target.gateway}/32"],
        "common_nftables_sip_sources": [f"{target.gateway}/32"],
        "kamailio_allowlist": [f"{target.gateway}/32"],
        "kamailio_media_nodes": [
            {"address": target.media_address, "port": STAND_IN_PORT, "name": "stand-in"}
        ],
        "kamailio_tls_self_signed_name": "edge.ivagate.test",
        "freeswitch_esl_password": ESL_PASSWORD,
        "controller_esl_password": ESL_PASSWORD,
        "controller_api_token": API_TOKEN,
    }
    host = target.container.name
    inventory = {
        "all": {
            "vars": site_vars,
            "children": {
                "edge": {"hosts": {host: host_vars}},
                "media": {"hosts": {host: host_vars}},
            },
        }
    }
    path = work / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return Site(target, path, sources, work)


@dataclass(frozen=True)
class Applied:
    first: Run
    second: Run


@pytest.fixture(scope="module")
def applied(site: Site) -> Applied:
    """site.yml applied twice to the fresh target, FreeSWITCH left out (no token here)."""
    first = site.play("--skip-tags", "freeswitch", name="apply-1")
    assert first.returncode == 0, first.output[-5000:]
    second = site.play("--skip-tags", "freeswitch", name="apply-2")
    return Applied(first, second)
