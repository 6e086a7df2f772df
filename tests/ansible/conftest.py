"""Fixtures for the Ansible tests: a fresh Debian host in a container, and site.yml applied to it.

The target is the project's base image plus systemd as init (a real server's service manager:
the roles' units, restart policies and limits are exercised as they are in production) and
Python for Ansible's modules. Ansible reaches it through ``docker exec`` (community.docker).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.ansible_site import (
    STAND_IN_PORT,
    Applied,
    Site,
    Target,
    base_image,
    make_site,
    serve_esl_double,
    start_target,
)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A fresh Debian host: base image + systemd, on a bridge network of its own."""
    with start_target(base_image(), "latest") as host:
        yield host


@pytest.fixture(scope="module")
def site(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """An inventory naming the container as both edge and media node. The media node the edge
    dispatches to is a stand-in run in the target itself, on its private network's address as
    a real node would be."""
    stand_in = {"address": target.media_address, "port": STAND_IN_PORT, "name": "stand-in"}
    return make_site(
        target, tmp_path_factory.mktemp("ansible"), {"kamailio_media_nodes": [stand_in]}
    )


@pytest.fixture(scope="module")
def applied(site: Site) -> Applied:
    """site.yml applied twice to the fresh target, FreeSWITCH left out (no token here): the
    ESL double stands where the controller expects FreeSWITCH's event socket."""
    serve_esl_double(site.target)
    first = site.play("--skip-tags", "freeswitch", name="apply-1")
    assert first.returncode == 0, first.output[-5000:]
    second = site.play("--skip-tags", "freeswitch", name="apply-2")
    return Applied(first, second)
