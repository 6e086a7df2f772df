"""The FreeSWITCH config tree, checked without FreeSWITCH: parsing, consistency, the call path."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fs_tree import CONF_DIR, SITE_ENV, Assembly, run_dialplan
from lxml import etree

Tree = Callable[..., Assembly]

# Modules and the configuration each one reads; None: the module reads none.
MODULE_CONFIG = {
    "mod_logfile": "logfile.conf",
    "mod_event_socket": "event_socket.conf",
    "mod_sofia": "sofia.conf",
    "mod_commands": None,
    "mod_dptools": None,
    "mod_dialplan_xml": None,
    "mod_sndfile": None,
    "mod_native_file": None,
    "mod_tone_stream": None,
    "mod_say_en": None,
    "mod_flite": None,
}
CORE_CONFIG = {"switch.conf", "modules.conf", "acl.conf"}
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
XML_FILES = sorted(CONF_DIR.rglob("*.xml"))


def loaded_modules(assembly: Assembly) -> list[str]:
    return [m.get("module") for m in assembly.configuration("modules.conf").iter("load")]


def acl_list(assembly: Assembly, name: str) -> etree._Element:
    found = assembly.configuration("acl.conf").xpath(f"network-lists/list[@name='{name}']")
    assert found, f"ACL list {name!r} is not defined in acl.conf"
    element: etree._Element = found[0]
    return element


def profile(assembly: Assembly) -> dict[str, str]:
    found = assembly.configuration("sofia.conf").xpath("profiles/profile[@name='ivagate']")
    assert found, "no sofia profile named ivagate"
    return assembly.params(found[0])


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_xml_file_parses(path: Path) -> None:
    """Each XML file of the tree is well-formed on its own (lxml, strict)."""
    etree.parse(str(path), etree.XMLParser(recover=False))


def test_tree_is_about_ten_files_each_with_a_header_comment() -> None:
    """The tree stays small, and every file opens with a comment saying why it exists."""
    files = [p for p in CONF_DIR.rglob("*") if p.is_file()]
    assert len(files) <= 15, sorted(str(p) for p in files)
    for path in files:
        head = path.read_text().lstrip()
        head = head.split("?>", 1)[1].lstrip() if head.startswith("<?xml") else head
        opener = "<!--" if path.suffix == ".xml" else "#"
        assert head.startswith(opener), f"{path.name} has no header comment"


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_preprocessor_lines_are_whole_and_never_in_comments(path: Path) -> None:
    """FreeSWITCH's preprocessor works line by line and ignores comments: keep it unambiguous."""
    for comment in etree.parse(str(path)).iter(etree.Comment):
        assert "X-PRE-PROCESS" not in comment.text.upper(), "would run despite the comment"
        assert "$${" not in comment.text, "would be expanded despite the comment"
    for line in path.read_text().splitlines():
        if "<X-PRE-PROCESS" in line:
            assert line.rstrip().endswith("/>"), f"preprocessor command spans lines: {line!r}"


def test_tree_assembles_with_every_variable_defined(tree: Tree) -> None:
    """Every $${var} the tree uses is defined before the line that uses it."""
    assembly = tree()
    assert assembly.undefined == []
    assert len(assembly.files) == len(XML_FILES), "a file is never included"
    assembly.root  # noqa: B018 - the assembled document must parse too


def test_each_loaded_module_is_known_and_configured(tree: Tree) -> None:
    """Only the modules ivagate uses load; each one that reads a configuration finds it."""
    assembly = tree()
    loaded = loaded_modules(assembly)
    assert len(set(loaded)) == len(loaded), "a module is loaded twice"
    assert set(loaded) == set(MODULE_CONFIG)
    present = {c.get("name") for c in assembly.root.iter("configuration")}
    needed = {MODULE_CONFIG[m] for m in loaded} - {None}
    assert needed <= present, f"missing configuration: {needed - present}"
    assert present <= needed | CORE_CONFIG, f"configuration nobody reads: {present - needed}"


def test_listeners_bind_only_the_configured_addresses(tree: Tree) -> None:
    """SIP and RTP bind the site's address, the event socket loopback; nothing binds a wildcard."""
    assembly = tree({"IVAGATE_FS_RTP_IP": None, "IVAGATE_FS_EXTERNAL_MEDIA_IP": "203.0.113.50"})
    sip = profile(assembly)
    assert sip["sip-ip"] == sip["rtp-ip"] == SITE_ENV["IVAGATE_FS_SIP_IP"]
    assert sip["ext-rtp-ip"] == "203.0.113.50"
    assert (sip["sip-port"], sip["tls"], sip["tls-sip-port"]) == ("5080", "false", "5081")
    esl = assembly.params(assembly.configuration("event_socket.conf"))
    assert esl["listen-ip"] == "127.0.0.1"
    assert esl["listen-port"] == "8021"
    values = [p.get("value") for p in assembly.root.iter("param")]
    assert not {"0.0.0.0", "::", "auto", "auto-nat"} & set(values)
    assert profile(tree({"IVAGATE_FS_RTP_IP": "192.0.2.11"}))["rtp-ip"] == "192.0.2.11"


def test_event_socket_is_loopback_only_with_the_sites_password(tree: Tree) -> None:
    """The event socket admits loopback peers only and uses IVAGATE_FS_ESL_PASSWORD verbatim."""
    assembly = tree()
    esl = assembly.params(assembly.configuration("event_socket.conf"))
    assert esl["password"] == SITE_ENV["IVAGATE_FS_ESL_PASSWORD"]
    allowed = acl_list(assembly, esl["apply-inbound-acl"])
    assert allowed.get("default") == "deny"
    for node in allowed.iter("node"):
        assert ipaddress.ip_network(node.get("cidr")).subnet_of(LOOPBACK)  # type: ignore[arg-type]


def test_event_socket_password_has_no_default(tree: Tree) -> None:
    """Without IVAGATE_FS_ESL_PASSWORD the password is undefined: entrypoint.sh refuses to start."""
    assembly = tree({"IVAGATE_FS_ESL_PASSWORD": None})
    assert any(ref.endswith(" ivagate_fs_esl_password") for ref in assembly.undefined)
    assert "cluecon" not in "".join(p.read_text().lower() for p in XML_FILES)


def test_profile_takes_invites_only_from_the_edge(tree: Tree) -> None:
    """The profile trusts the edge's CIDRs (deny by default), needs no auth, takes no REGISTER."""
    assembly = tree()
    sip = profile(assembly)
    edge = acl_list(assembly, sip["apply-inbound-acl"])
    assert edge.get("default") == "deny"
    cidrs = ",".join(node.get("cidr") for node in edge.iter("node"))
    assert cidrs == SITE_ENV["IVAGATE_FS_EDGE_CIDRS"]
    for cidr in cidrs.split(","):
        ipaddress.ip_network(cidr)
    assert (sip["auth-calls"], sip["disable-register"]) == ("false", "true")
    assert sip["parse-all-invite-headers"] == "true"
    assert (sip["dialplan"], sip["context"]) == ("XML", "ivagate")
    default_edge = acl_list(tree({"IVAGATE_FS_EDGE_CIDRS": None}), "ivagate_edge")
    for node in default_edge.iter("node"):
        assert ipaddress.ip_network(node.get("cidr")).subnet_of(LOOPBACK)  # type: ignore[arg-type]


def test_capacity_and_log_level_defaults_and_overrides(tree: Tree) -> None:
    """sessions-per-second is raised well above FreeSWITCH's 30; the log level is quiet."""
    core = tree().params(tree().configuration("switch.conf"))
    assert int(core["sessions-per-second"]) >= 100
    assert int(core["max-sessions"]) >= 1000
    assert core["loglevel"] in {"notice", "warning"}
    assert (core["rtp-start-port"], core["rtp-end-port"]) == ("16384", "32767")
    override = {
        "IVAGATE_FS_SESSIONS_PER_SECOND": "300",
        "IVAGATE_FS_MAX_SESSIONS": "5000",
        "IVAGATE_FS_LOG_LEVEL": "notice",
        "IVAGATE_FS_RTP_PORT_MIN": "20000",
        "IVAGATE_FS_RTP_PORT_MAX": "29999",
    }
    assembly = tree(override)
    core = assembly.params(assembly.configuration("switch.conf"))
    assert [core[k] for k in ("sessions-per-second", "max-sessions", "loglevel")] == [
        "300",
        "5000",
        "notice",
    ]
    assert (core["rtp-start-port"], core["rtp-end-port"]) == ("20000", "29999")


NOW = 1_800_000_000.0  # FreeSWITCH's clock in these tests, seconds since the epoch
# What a live controller keeps set: ready, and a lease (µs) a few seconds ahead of the clock
READY = {"ivagate_ready": "true", "ivagate_ready_until": str(round((NOW + 2.5) * 1e6))}


def test_ready_node_parks_the_call_for_the_controller(tree: Tree) -> None:
    """ivagate_ready=true and the lease ahead: fs_send_unsupported_info and sched_hangup are
    set, then park."""
    steps = run_dialplan(tree(), "ivagate", READY, NOW)
    assert steps == [
        ("set", "fs_send_unsupported_info=true"),
        ("sched_hangup", "+3600 ALLOTTED_TIMEOUT"),
        ("park", ""),
    ]
    hours = run_dialplan(tree({"IVAGATE_FS_MAX_CALL_SECONDS": "7200"}), "ivagate", READY, NOW)
    assert ("sched_hangup", "+7200 ALLOTTED_TIMEOUT") in hours


@pytest.mark.parametrize("ready", [None, "", "false", "TRUE", "true-ish"])
def test_node_not_ready_answers_503_at_once(tree: Tree, ready: str | None) -> None:
    """Unless ivagate_ready is exactly true, the only step is respond 503 (the edge fails
    over), however long the lease."""
    channel = {k: v for k, v in (READY | {"ivagate_ready": ready}).items() if v is not None}
    steps = run_dialplan(tree(), "ivagate", channel, NOW)
    assert steps == [("respond", "503 Service Unavailable")]
    assert "ivagate_ready" not in tree().variables, "vars.xml must not make a node ready"


@pytest.mark.parametrize("until", [None, "", str(round(NOW * 1e6)), "1799999999000000"])
def test_node_whose_lease_ran_out_answers_503_at_once(tree: Tree, until: str | None) -> None:
    """ivagate_ready=true but the lease unset or not ahead of the clock (the controller died
    without draining): respond 503, as when drained."""
    channel = {"ivagate_ready": "true"} | ({} if until is None else {"ivagate_ready_until": until})
    steps = run_dialplan(tree(), "ivagate", channel, NOW)
    assert steps == [("respond", "503 Service Unavailable")]
    assert "ivagate_ready_until" not in tree().variables, "vars.xml must not open the gate"


# Both AES_CM_128 suites RingCX's SBCs may offer, colon-separated as FreeSWITCH parses them
MANDATORY = (
    "set",
    "rtp_secure_media_inbound=mandatory:AES_CM_128_HMAC_SHA1_80:AES_CM_128_HMAC_SHA1_32",
)


@pytest.mark.parametrize(
    ("transport", "switch", "required"),
    [("tls", None, True), ("tls", "false", False), ("udp", None, False), ("tcp", "true", False)],
)
def test_srtp_required_only_on_tls_calls(
    tree: Tree, transport: str, switch: str | None, required: bool
) -> None:
    """X-Edge-Transport: tls makes SRTP mandatory (unless switched off); other calls: optional."""
    assembly = tree({"IVAGATE_FS_SRTP_REQUIRED_ON_TLS": switch})
    channel = {**READY, "sip_h_X-Edge-Transport": transport}
    steps = run_dialplan(assembly, "ivagate", channel, NOW)
    assert (MANDATORY in steps) is required
    assert steps[-1] == ("park", "")
    if required:
        assert steps.index(MANDATORY) < steps.index(("park", ""))


def test_srtp_suites_are_a_site_value(tree: Tree) -> None:
    """IVAGATE_FS_SRTP_SUITES replaces the suites a TLS call must use."""
    assembly = tree({"IVAGATE_FS_SRTP_SUITES": "AEAD_AES_256_GCM_8:AES_CM_128_HMAC_SHA1_80"})
    channel = {**READY, "sip_h_X-Edge-Transport": "tls"}
    steps = run_dialplan(assembly, "ivagate", channel, NOW)
    assert (
        "set",
        "rtp_secure_media_inbound=mandatory:AEAD_AES_256_GCM_8:AES_CM_128_HMAC_SHA1_80",
    ) in steps


def test_no_park_timeout_anywhere() -> None:
    """park_timeout hangs up calls the controller already answered: the tree never sets it."""
    for path in CONF_DIR.rglob("*.xml"):
        body = re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.DOTALL)
        assert "park_timeout" not in body, path


def test_image_recipe_ships_exactly_this_tree() -> None:
    """Every config file is COPY'd into the image, and the token is a secret, not a build arg."""
    recipe = (CONF_DIR / "Dockerfile").read_text()
    copied = " ".join(re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", recipe, flags=re.M))
    for path in CONF_DIR.rglob("*"):
        if path.is_file() and path.name not in {"Dockerfile", "README.md"}:
            rel = path.relative_to(CONF_DIR)
            assert str(rel) in copied.split() or f"{rel.parts[0]}/" in copied.split(), rel
    assert re.search(r"--mount=type=secret,id=signalwire_token", recipe)
    assert not re.search(r"^ARG\s+\S*TOKEN", recipe, flags=re.M | re.I)
    assert re.search(r"^ARG BASE_IMAGE=ivagate/debian:bookworm-slim$", recipe, flags=re.M)
