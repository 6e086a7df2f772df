"""Fixtures for the Ansible tests: a fresh Debian host in a container, and site.yml applied to it.

The target is the project's base image plus systemd as init (a real server's service manager:
the roles' units, restart policies and limits are exercised as they are in production) and
Python for Ansible's modules. Ansible reaches it through ``docker exec`` (community.docker).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.ansible_site import (
    API_TOKEN,
    BASE_IMAGE,
    ESL_PASSWORD,
    LABELS,
    OPERATOR_KEY,
    REPO,
    SESSION,
    STAND_IN_PORT,
    TARGET_IMAGE,
    Applied,
    Site,
    Target,
    docker_client,
    serve_esl_double,
    snapshot_sources,
)


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
        # this checkout's own wheelhouse: the default one in ~/.cache is shared by every
        # checkout on the machine, and holds one ivagate wheel per version number
        "controller_wheelhouse": str(REPO / "run" / "ansible-wheelhouse"),
        # This machine plays RingCX and the operator. The media node is a stand-in run in
        # the target itself, on its private network's address as a real node would be.
        "common_operators": [{"name": "operator", "sudo": True, "ssh_keys": [OPERATOR_KEY]}],
        "common_nftables_admin_sources": [f"{target.gateway}/32"],
        "common_nftables_sip_sources": [f"{target.gateway}/32"],
        "kamailio_allowlist": [f"{target.gateway}/32"],
        "kamailio_media_nodes": [
            {"address": target.media_address, "port": STAND_IN_PORT, "name": "stand-in"}
        ],
        "kamailio_tls_self_signed_demo": True,
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


@pytest.fixture(scope="module")
def applied(site: Site) -> Applied:
    """site.yml applied twice to the fresh target, FreeSWITCH left out (no token here): the
    ESL double stands where the controller expects FreeSWITCH's event socket."""
    serve_esl_double(site.target)
    first = site.play("--skip-tags", "freeswitch", name="apply-1")
    assert first.returncode == 0, first.output[-5000:]
    second = site.play("--skip-tags", "freeswitch", name="apply-2")
    return Applied(first, second)
