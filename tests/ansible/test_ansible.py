"""The Ansible roles: syntax, lint at the production profile, a real apply to a fresh Debian
host, a second apply and a check-mode run that change nothing, a RingCX call through the edge
they provisioned, an allowlist update reloaded over RPC, a play that fails on a controller
that is not ready, the INFO report token on both sides, and the FreeSWITCH role's config."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import time

import pytest
from tests.support.ansible_site import (
    ANSIBLE_DIR,
    API_TOKEN,
    BIN,
    ESL_PASSWORD,
    FIRST_APPLY,
    OPERATOR_KEY,
    REPORT_TOKEN,
    STAND_IN_PORT,
    Applied,
    Site,
    ansible_env,
    kit_wheels,
)

from ivagate_kit import CallPlan, run_call
from ivagate_kit.transport import TransportName

pytestmark = [pytest.mark.ansible, FIRST_APPLY]

INFOS: list[dict[str, object] | str] = [{"n": 1}, {"intent": "done", "final": True}]


def tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=False,
    )


def test_syntax_check() -> None:
    """site.yml and every role pass ansible-playbook's syntax check on the example inventory."""
    done = tool("ansible-playbook", "--syntax-check", "-i", "inventory/example", "site.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_production_profile() -> None:
    """ansible-lint passes at its production profile."""
    done = tool("ansible-lint", "--profile", "production", "site.yml", "roles", "inventory")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failure(s), 0 warning(s)" in done.stdout + done.stderr


@pytest.mark.docker
def test_first_apply_provisions_the_host(applied: Applied, site: Site) -> None:
    """The first apply succeeds, changes the host and leaves Kamailio and the controller running."""
    assert applied.first.failed == 0 and applied.first.changed > 0
    active = site.exec("systemctl", "is-active", "kamailio", "ivagate-controller", "nftables")
    assert active.split() == ["active", "active", "active"]
    assert site.exec("cat", "/home/operator/.ssh/authorized_keys").strip() == OPERATOR_KEY
    assert "sudo" in site.exec("id", "-nG", "operator").split()


@pytest.mark.docker
def test_second_apply_changes_nothing(applied: Applied) -> None:
    """A second apply reports changed=0 (idempotence)."""
    assert applied.second.returncode == 0, applied.second.output[-5000:]
    assert (applied.second.changed, applied.second.failed) == (0, 0), applied.second.output


@pytest.mark.docker
def test_check_mode_changes_nothing(applied: Applied, site: Site) -> None:
    """--check on the provisioned host runs through and predicts no change."""
    run = site.play("--check", "--skip-tags", "freeswitch", name="check")
    assert run.returncode == 0, run.output[-5000:]
    assert (run.changed, run.failed) == (0, 0), run.output


@pytest.mark.docker
def test_check_diff_never_prints_a_secret(applied: Applied, site: Site) -> None:
    """--check --diff with new secrets predicts the changed files without showing the secrets."""
    password, token, report = (secrets.token_hex(8) for _ in range(3))
    extra = {
        "freeswitch_esl_password": password,
        "controller_esl_password": password,
        "controller_api_token": token,
        "kamailio_report_token": report,
        "controller_edge_token": report,
    }
    # one play each: the freeswitch role stops at its install step (no token), after its
    # config tasks, and would take the controller role with it
    for role in ("kamailio", "freeswitch", "controller"):
        run = site.play("--check", "--diff", "--tags", role, extra=extra, name=f"diff-{role}")
        assert run.changed >= 1, run.output  # the file holding the secret would change
        for secret in (password, token, report):
            assert secret not in run.output, run.output


@pytest.mark.docker
def test_edge_without_certificate_is_refused_unless_demo(applied: Applied, site: Site) -> None:
    """Without a certificate and without the demo switch, the kamailio role stops at once."""
    run = site.play(
        "--tags", "kamailio", extra={"kamailio_tls_self_signed_demo": False}, name="no-cert"
    )
    assert run.returncode != 0 and run.failed == 1, run.output
    assert "kamailio_tls_certificate or kamailio_tls_private_key is empty" in run.output
    assert run.changed == 0, run.output


@pytest.fixture(scope="module")
def stand_in(applied: Applied, site: Site, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`ivagate-kit stand-in`, the kit installed on the target beside the controller, as the
    media node."""
    uri = f"sip:{site.target.media_address}:{STAND_IN_PORT}"
    kit = site.install_kit(kit_wheels(tmp_path_factory.mktemp("kit-wheels")))
    command = [
        kit, "stand-in", "--listen", uri.removeprefix("sip:"),
        "--transport", "udp",
        *(arg for info in INFOS for arg in ("--info", json.dumps(info))),
    ]  # fmt: skip
    site.target.container.exec_run(command, detach=True)
    listening = f":{STAND_IN_PORT:04X} "
    for _ in range(50):
        if listening in site.exec("cat", "/proc/net/udp"):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the stand-in media node did not start")
    # Probing marked the node down while nothing listened; put it back as an operator would.
    site.rpc("dispatcher.set_state", "a", 1, uri)
    return uri


@pytest.mark.docker
@pytest.mark.parametrize(("transport", "port"), [("udp", 5060), ("tls", 5061)])
async def test_emulator_call_through_provisioned_edge(
    stand_in: str, site: Site, transport: TransportName, port: int
) -> None:
    """A RingCX-emulated call through the provisioned edge is answered by the media node."""
    plan = CallPlan(
        target=f"{site.target.address}:{port}",
        transport=transport,
        local_host=site.target.gateway,
        timeout=15,
    )
    report = await run_call(plan)
    assert report.ok, report.to_dict()
    assert report.invite_status == 200
    assert [info.json for info in report.infos] == INFOS


@pytest.mark.docker
def test_firewall_admits_sip_only_from_the_allowlist(applied: Applied, site: Site) -> None:
    """The TLS port takes a connection from the allowlisted address; nftables drops any other."""
    edge = (site.target.address, 5061)
    with socket.create_connection(edge, timeout=5, source_address=(site.target.gateway, 0)):
        pass
    outsider = (site.target.media_gateway, 0)  # this machine, but not on the allowlist
    with pytest.raises(TimeoutError):
        socket.create_connection(edge, timeout=2, source_address=outsider).close()


@pytest.mark.docker
def test_controller_runs_on_inventory_settings(applied: Applied, site: Site) -> None:
    """The controller's unit carries limits, and its settings file holds the Vault secrets."""
    unit = site.exec("systemctl", "show", "ivagate-controller", "-p", "Restart,MemoryMax,TasksMax")
    assert "Restart=always" in unit and "TasksMax=256" in unit and "MemoryMax=1073741824" in unit
    settings = site.exec("cat", "/etc/ivagate/controller.toml")
    assert f'"password" = "{ESL_PASSWORD}"' in settings
    assert f'"token" = "{API_TOKEN}"' in settings
    # the edges' INFO reports: on the node's address, from the inventory's edges
    address = site.target.address
    edge = f'["edge"]\n"edges" = ["{address}"]\n"listen" = "{address}:8449"\n'
    assert edge + f'"token" = "{REPORT_TOKEN}"\n' in settings
    mode = site.exec("stat", "-c", "%a %U:%G", "/etc/ivagate/controller.toml").strip()
    assert mode == "640 root:ivagate"
    assert "default_bot" not in settings  # no default bot unless the site names one


@pytest.mark.docker
def test_edge_reads_its_report_token_from_a_private_file(applied: Applied, site: Site) -> None:
    """The token is in kamailio-local.cfg, readable by root and Kamailio only, and on no
    command line; the media node's firewall opens the report port to the edges alone."""
    local = "/etc/ivagate/edge/kamailio-local.cfg"
    assert f'#!define REPORT_TOKEN "{REPORT_TOKEN}"\n' in site.exec("cat", local)
    assert site.exec("stat", "-c", "%a %U:%G", local).strip() == "640 root:kamailio"
    command_lines = site.command_lines()
    assert "/usr/sbin/kamailio" in command_lines and REPORT_TOKEN not in command_lines
    rule = f"ip saddr {site.target.address} tcp dport 8449 accept"
    assert rule in site.exec("nft", "list", "table", "inet", "ivagate")


@pytest.mark.docker
@pytest.mark.parametrize(
    ("role", "variable"),
    [("kamailio", "kamailio_report_token"), ("controller", "controller_edge_token")],
)
def test_play_refuses_a_site_without_report_token(
    applied: Applied, site: Site, role: str, variable: str
) -> None:
    """Without the INFO report token the role stops at once, naming the variable."""
    run = site.play("--tags", role, extra={variable: ""}, name=f"no-report-token-{role}")
    assert run.returncode != 0 and run.failed == 1, run.output
    assert f"{variable} must be set" in run.output, run.output
    assert run.changed == 0, run.output


@pytest.mark.docker
def test_controller_is_ready_on_freeswitchs_event_socket(applied: Applied, site: Site) -> None:
    """/readyz answers 200 once the controller is logged in to the event socket with the
    inventory's password (here the ESL double, standing where FreeSWITCH would)."""
    probe = (
        "import json, time, urllib.request as u, urllib.error as e\n"
        "for _ in range(60):\n"
        "    try:\n"
        "        print(json.dumps(json.load(u.urlopen('http://127.0.0.1:8088/readyz')))); break\n"
        "    except e.HTTPError as answer:\n"
        "        last = answer.read().decode(); time.sleep(0.5)\n"
        "else:\n"
        "    print(last)"
    )
    assert json.loads(site.exec("python3", "-c", probe)) == {"ready": True, "esl_connected": True}


@pytest.mark.docker
def test_play_fails_when_the_controller_is_not_ready(applied: Applied, site: Site) -> None:
    """A controller the event socket refuses (wrong password: /readyz false) fails the play,
    which shows the unit's last log lines; the right password makes it pass again."""
    wrong = {"controller_esl_password": "not-the-esl-password", "controller_health_timeout": 10}
    try:
        run = site.play("--tags", "controller", extra=wrong, name="esl-wrong")
        assert run.returncode != 0 and run.failed == 1, run.output
        assert "ivagate-controller is not healthy" in run.output, run.output
        assert "Started ivagate-controller.service" in run.output, run.output  # the journal
        assert "not-the-esl-password" not in run.output, run.output
    finally:
        fixed = site.play("--tags", "controller", name="esl-fixed")
    assert fixed.returncode == 0 and fixed.failed == 0, fixed.output[-5000:]


@pytest.mark.docker
def test_allowlist_update_reloads_over_rpc(applied: Applied, site: Site) -> None:
    """A new allowlist entry is loaded by permissions.addressReload, with no Kamailio restart."""
    pid_before = site.exec("cat", "/run/kamailio/kamailio.pid")
    run = site.play(
        "--tags",
        "kamailio",
        extra={"kamailio_host_allowlist": ["192.0.2.0/24"]},
        name="allowlist",
    )
    assert run.returncode == 0, run.output[-5000:]
    assert run.changed == 2, run.output  # the allowlist file and its RPC reload handler
    assert "RUNNING HANDLER [kamailio : Reload the Kamailio allowlist]" in run.output
    assert "Restart the Kamailio service" not in run.output
    assert site.exec("cat", "/run/kamailio/kamailio.pid") == pid_before
    assert "192.0.2.0" in json.dumps(site.rpc("permissions.subnetDump"))


@pytest.mark.docker
def test_freeswitch_role_renders_config_and_stops_at_install(applied: Applied, site: Site) -> None:
    """Without a token the freeswitch role stops at its install step, its config in place."""
    run = site.play("--tags", "freeswitch", name="freeswitch")
    assert run.returncode != 0 and run.failed == 1
    assert "freeswitch_signalwire_token is empty" in run.output
    assert "Refuse to install without a SignalWire token" in run.output
    for name in ("freeswitch.xml", "vars.xml", "sip_profiles/ivagate.xml", "dialplan/ivagate.xml"):
        installed = site.exec("cat", f"/etc/ivagate/freeswitch/{name}")
        assert installed == (site.sources / "freeswitch" / name).read_text(), name
    env = dict(
        line.split("=", 1)
        for line in site.exec("cat", "/etc/ivagate/freeswitch.env").splitlines()
        if line and not line.startswith("#")
    )
    assert env["IVAGATE_FS_SIP_IP"] == site.target.address
    assert env["IVAGATE_FS_EDGE_CIDRS"] == f"{site.target.address}/32"  # the edge, one host
    assert env["IVAGATE_FS_ESL_PASSWORD"] == ESL_PASSWORD
    assert env["IVAGATE_FS_RTP_PORT_MIN"] == "16384"
    assert "IVAGATE_FS_EXTERNAL_MEDIA_IP" not in env  # empty: vars.xml keeps its default
