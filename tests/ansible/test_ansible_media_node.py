"""site.yml with the freeswitch role on a host holding an operator's pre-installed FreeSWITCH
(the one found here, packaged by scripts/freeswitch-image), then a RingCX call through the
provisioned edge to that real media node, its controller and the demo bot.

It runs whenever a real FreeSWITCH is found (``support.freeswitch``), and skips otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.ansible_site import (
    FIRST_APPLY,
    Run,
    Site,
    Target,
    base_image,
    make_site,
    start_target,
)
from tests.support.freeswitch import SKIP_REASON, find_image

from ivagate_kit import CallPlan, run_call
from ivagate_kit.transport import TransportName

pytestmark = [pytest.mark.ansible, pytest.mark.docker, pytest.mark.freeswitch, FIRST_APPLY]

# Calls name their bot by header; the demo bot gives up waiting for a digit after 1 s.
CONTROLLER_SETTINGS = {
    "esl": {"host": "127.0.0.1", "port": 8021},
    "api": {"host": "127.0.0.1", "port": 8088},
    "routing": {"bot_header": "X-Bot-Id"},
    "call": {"bot_options": {"demo": {"timeout": 1}}},
    "log": {"level": "INFO"},
}


@pytest.fixture(scope="module")
def media_target() -> Iterator[Target]:
    """A fresh host whose FreeSWITCH is this machine's, copied in under /usr/local/freeswitch
    with the libraries it needs, as an operator's own build would be."""
    base_image()  # what the FreeSWITCH image is built on
    image = find_image()
    if image is None:
        pytest.skip(SKIP_REASON)
    with start_target(image, "freeswitch") as host:
        yield host


@pytest.fixture(scope="module")
def media_site(media_target: Target, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Edge and media node on the target, the edge dispatching to the inventory's media node."""
    site_vars = {"freeswitch_install": "preinstalled", "controller_settings": CONTROLLER_SETTINGS}
    return make_site(media_target, tmp_path_factory.mktemp("ansible-media"), site_vars)


@pytest.fixture(scope="module")
def provisioned(media_site: Site) -> Run:
    """The whole site.yml, freeswitch role included."""
    run = media_site.play(name="apply")
    assert run.returncode == 0 and run.failed == 0, run.output[-8000:]
    return run


def test_site_yml_leaves_every_service_running(provisioned: Run, media_site: Site) -> None:
    """Edge, FreeSWITCH and controller are active, FreeSWITCH on the edge as a one-host CIDR."""
    services = ("kamailio", "ivagate-freeswitch", "ivagate-controller")
    assert media_site.exec("systemctl", "is-active", *services).split() == ["active"] * 3
    env = media_site.exec("cat", "/etc/ivagate/freeswitch.env")
    assert f"IVAGATE_FS_EDGE_CIDRS={media_site.target.address}/32\n" in env
    assert "/usr/local/freeswitch" in media_site.exec(
        "systemctl", "show", "ivagate-freeswitch", "-p", "Environment"
    )


def wait_for_active_node(site: Site, uri: str) -> None:
    """The edge probed the node before it existed; its OPTIONS probes put it back in rotation."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if f'"URI": "{uri}", "FLAGS": "AP"' in json.dumps(site.rpc("dispatcher.list")):
            return
        time.sleep(1)
    pytest.fail(f"the edge never marked {uri} active: {site.rpc('dispatcher.list')}")


def ended_call(site: Site, call_id: str) -> Any:
    """The controller's record of the call once it has ended (the caller's BYE reaches the
    controller through FreeSWITCH a moment after the caller is done)."""
    deadline = time.monotonic() + 30
    while (record := site.api(f"/calls/{call_id}"))["ended"] is False:
        if time.monotonic() > deadline:
            pytest.fail(f"the controller never saw the call end: {record}")
        time.sleep(0.5)
    return record


@pytest.mark.parametrize(("transport", "port"), [("udp", 5060), ("tls", 5061)])
async def test_demo_bot_call_through_provisioned_stack(
    provisioned: Run, media_site: Site, transport: TransportName, port: int
) -> None:
    """A RingCX call (TLS with SRTP, or UDP) reaches the real FreeSWITCH through the edge; the
    controller routes it to the demo bot, whose update and final intent reach the caller. The
    edge reports the caller's answer to each INFO to the controller, which records it."""
    target = media_site.target
    wait_for_active_node(media_site, f"sip:{target.address}:5080")
    plan = CallPlan(
        target=f"{target.address}:{port}",
        transport=transport,
        local_host=target.gateway,
        headers={"X-Bot-Id": "demo"},
        timeout=30,
    )
    report = await run_call(plan)
    assert report.ok, report.to_dict()
    bodies = [info.json for info in report.infos]
    assert bodies[0] == {"event": "digit", "digit": None}
    assert bodies[-1]["final"] is True and bodies[-1]["intent"] == "NoInput", bodies
    record = ended_call(media_site, report.call_id)
    answers = [(info["result"], info["sip_status"]) for info in record["infos"]]
    assert answers == [("reply", 200)] * len(bodies), record
    assert record["outcome"] == "Success", record


def test_play_fails_when_freeswitch_does_not_start(provisioned: Run, media_site: Site) -> None:
    """A FreeSWITCH that refuses its settings (a bare address where entrypoint.sh wants CIDRs,
    as the role once rendered them) fails the play with the unit's log; the inventory's own
    values bring it back."""
    bare = {
        "freeswitch_environment": {"EDGE_CIDRS": media_site.target.address},
        "freeswitch_health_timeout": 10,
    }
    try:
        run = media_site.play("--tags", "freeswitch", extra=bare, name="bare-cidr")
        assert run.returncode != 0 and run.failed == 1, run.output
        assert "ivagate-freeswitch is not healthy" in run.output, run.output
        assert "is not address/bits" in run.output, run.output  # entrypoint.sh, from the journal
    finally:
        fixed = media_site.play("--tags", "freeswitch", name="cidr-fixed")
    assert fixed.returncode == 0 and fixed.failed == 0, fixed.output[-5000:]
