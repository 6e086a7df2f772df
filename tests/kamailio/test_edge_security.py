"""The edge's gates: allowlist and its RPC reload, probes, scanners, floods, malformed SIP,
the TLS policy and the loopback-only control listener."""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.edge import (
    CALLER,
    NODE_HOSTS,
    OUTSIDER,
    PROBE,
    Edge,
    free_port,
)

from ivagate_kit import CallPlan, run_call
from ivagate_kit.media_node import MediaNode, NodeScript

pytestmark = [pytest.mark.kamailio]


def options(edge: Edge, source: str, user_agent: str = "ringcx-probe") -> bytes:
    branch = uuid.uuid4().hex
    return (
        f"OPTIONS sip:{edge.sip} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:5999;branch=z9hG4bK{branch}\r\n"
        f"From: <sip:probe@{source}>;tag={branch[:8]}\r\n"
        f"To: <sip:{edge.sip}>\r\n"
        f"Call-ID: {branch}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        f"User-Agent: {user_agent}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def udp_exchange(edge: Edge, source: str, data: bytes, wait: float = 0.5) -> bytes | None:
    """Send one datagram from ``source``; the first reply or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(wait)
        sock.sendto(data, (edge.host, edge.sip_port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def answers_options(edge: Edge, source: str, user_agent: str = "ringcx-probe") -> bool:
    reply = udp_exchange(edge, source, options(edge, source, user_agent))
    return reply is not None and reply.startswith(b"SIP/2.0 200")


async def test_outsider_never_reaches_a_node_until_reload_admits_it(
    start_edge: Callable[..., Edge],
) -> None:
    """Off the allowlist: silence, the node sees nothing; after addressReload it gets through."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(nodes=[f"sip:{NODE_HOSTS[0]}:{port}"])
    node = MediaNode(NODE_HOSTS[0], port, script=NodeScript(infos=[{"final": True}]))
    async with node:
        plan = CallPlan(target=edge.sip, transport="udp", local_host=OUTSIDER, timeout=2)
        refused = await run_call(plan)
        assert refused.invite_status is None  # silent drop: not even 100 Trying
        assert node.invites == []
        assert "is not on the allowlist" in edge.log()

        edge.write_allowlist([f"{CALLER}/32", f"{OUTSIDER}/32"])
        edge.rpc("permissions.addressReload")
        plan.timeout = 10
        admitted = await run_call(plan)
    assert admitted.ok, admitted.to_dict()
    # Under load a retransmission of the refused INVITE can arrive after the reload and be
    # admitted as well (rightly): count only the admitted call.
    calls = [m for m in node.invites if m.headers.get("Call-ID") == admitted.call_id]
    assert len(calls) == 1


def test_options_answered_for_ringcx_and_probes_only(start_edge: Callable[..., Edge]) -> None:
    """OPTIONS to the edge: 200 for RingCX and probes, silence for others and scanners."""
    edge = start_edge(probes=[f"{PROBE}/32"])
    assert answers_options(edge, CALLER)
    assert answers_options(edge, PROBE)
    assert not answers_options(edge, OUTSIDER)
    assert not answers_options(edge, CALLER, user_agent="friendly-scanner")
    assert "scanner 'friendly-scanner'" in edge.log()
    _, metrics = edge.http_get("/metrics")
    assert 'kamailio_edge_dropped_total{reason="not_allowed"} 1' in metrics
    assert 'kamailio_edge_dropped_total{reason="scanner"} 1' in metrics


def flood(edge: Edge, source: str, count: int = 60) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for _ in range(count):
            sock.sendto(options(edge, source), (edge.host, edge.sip_port))


def test_flood_from_an_unknown_address_gets_it_banned(start_edge: Callable[..., Edge]) -> None:
    """More than PIKE_REQS requests per 2 s from a non-RingCX address put it in the ban table."""
    edge = start_edge(probes=[f"{PROBE}/32"], defines={"PIKE_REQS": "5"})
    assert answers_options(edge, PROBE)
    flood(edge, PROBE)
    assert not answers_options(edge, PROBE)  # the edge has read the whole flood by now
    assert edge.rpc("htable.get", "ipban", PROBE)["item"]["value"] == 1
    flood(edge, CALLER)
    assert answers_options(edge, CALLER)  # RingCX is never flood-banned


def test_testing_hook_turns_flood_protection_off(start_edge: Callable[..., Edge]) -> None:
    """With TESTING, `pv.shvSet pike_off` lets a test flood the edge without bans."""
    edge = start_edge(probes=[f"{PROBE}/32"], defines={"PIKE_REQS": "5"})
    edge.rpc("pv.shvSet", "pike_off", "int", 1)
    flood(edge, PROBE)
    assert answers_options(edge, PROBE)
    assert edge.rpc("htable.dump", "ipban") == []


MALFORMED = [
    b"\x00\xff\xfe garbage \x01\x02",
    b"INVITE\r\n\r\n",
    b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\nCSeq: abc OPTIONS\r\n\r\n",
    b"INVITE sip:1@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\nv=0",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n",
    b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 60000 + b"\r\n\r\n",
]


async def test_malformed_sip_leaves_the_edge_serving(start_edge: Callable[..., Edge]) -> None:
    """Garbage over UDP and TCP (also from RingCX's address) is dropped; calls still go through."""
    port = free_port(NODE_HOSTS[0])
    edge = start_edge(nodes=[f"sip:{NODE_HOSTS[0]}:{port}"])
    for data in MALFORMED:
        udp_exchange(edge, CALLER, data, wait=0.05)
        with socket.create_connection(
            (edge.host, edge.sip_port), source_address=(CALLER, 0)
        ) as tcp:
            tcp.sendall(data)
    assert edge.alive()
    assert answers_options(edge, CALLER)
    node = MediaNode(NODE_HOSTS[0], port, script=NodeScript(infos=[{"final": True}]))
    async with node:
        report = await run_call(
            CallPlan(target=edge.sip, transport="tcp", local_host=CALLER, timeout=10)
        )
    assert report.ok, report.to_dict()


def test_control_listener_serves_rpc_and_metrics_only_on_loopback_port(
    start_edge: Callable[..., Edge],
) -> None:
    """/RPC and /metrics answer on the control listener; HTTP to the SIP TCP port gets 403."""
    edge = start_edge()
    assert "kamailio" in edge.rpc("core.version")
    status, metrics = edge.http_get("/metrics")
    assert status == 200 and "kamailio_core_rcv_requests" in metrics
    status, _ = edge.http_get("/metrics", port=edge.sip_port)
    assert status == 403


def tls_connect(edge: Edge, context: ssl.SSLContext) -> str:
    """Handshake with the edge's TLS port; the negotiated protocol."""
    with (
        socket.create_connection((edge.host, edge.tls_port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(options(edge, "127.0.0.1"))  # a client-certificate failure shows here
        tls.recv(1)
        return str(tls.version())


def client_context(**versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, version in versions.items():
        setattr(context, name, version)
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_refuses_old_protocols_and_weak_ciphers(start_edge: Callable[..., Edge]) -> None:
    """TLS 1.0/1.1 and a non-AEAD TLS 1.2 suite are refused; TLS 1.2 ECDHE-GCM and TLS 1.3 work."""
    edge = start_edge(allow=["127.0.0.1/32"])
    assert tls_connect(edge, client_context()) == "TLSv1.3"
    strong = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    strong.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert tls_connect(edge, strong) == "TLSv1.2"
    weak = client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    old = client_context(
        minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1
    )
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    for refused in (weak, old):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(edge, refused)


def test_client_certificate_check(start_edge: Callable[..., Edge], tls_dir: Path) -> None:
    """With WITH_TLS_CLIENT_VERIFY a caller needs a certificate from the configured CA."""
    edge = start_edge(allow=["127.0.0.1/32"], client_verify=True)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(edge, client_context())
    with_cert = client_context()
    with_cert.load_cert_chain(tls_dir / "client.crt", tls_dir / "client.key")
    assert tls_connect(edge, with_cert) == "TLSv1.3"
