"""A carrier edge's two faces, with a real FreeSWITCH following the Route set behind NAT.

The edge listens on a public face (``PUBLIC_LISTEN``, advertised as ``PUBLIC``, the address
a NAT forwards to it) and a private face toward the media nodes (``MEDIA_ADDR``). An
nftables table of this test's own plays the NAT on loopback: traffic to ``PUBLIC`` goes to
the public face, and from the node it also gets the router's source address (hairpin NAT),
which the edge does not know as a media node. The node trusts only the private face
(IVAGATE_FS_EDGE_CIDRS). A call from the RingCX emulator over TLS must reach the node, and
the node's INFO and BYE must reach the caller: only when the Record-Route toward the node
names the private face, and the edge's datagrams and connections leave from it, over a UDP,
TCP or TLS node URI.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fs_esl import esl_session, parked, set_gate
from tests.support.edge import CALLER, Edge, EdgeSetup, write_certificates

from ivagate.esl import EslClient
from ivagate.info import encode_info, send_info_command
from ivagate_kit import CallPlan, run_call
from ivagate_kit.tls import self_signed
from support.freeswitch import SKIP_REASON, find_binary
from support.fs_node import LiveNode, live_freeswitch

pytestmark = [pytest.mark.freeswitch, pytest.mark.kamailio]

PUBLIC = "127.0.0.40"  # the edge's public address, on the NAT
PUBLIC_LISTEN = "127.0.0.1"  # where the NAT forwards it: the public face's listener
MEDIA_ADDR = "127.0.0.41"  # the private face toward the media nodes
ROUTER = "127.0.0.43"  # the NAT's own address, the source of hairpinned traffic


def nat_rules(table: str, node_ip: str) -> str:
    return f"""
table ip {table} {{
  chain output {{
    type nat hook output priority -100;
    ip daddr {PUBLIC} dnat to {PUBLIC_LISTEN}
  }}
  chain postrouting {{
    type nat hook postrouting priority 100;
    ip saddr {node_ip} ct status dnat snat to {ROUTER}
  }}
}}
"""


@pytest.fixture(scope="module")
def nat_table(faces_node: tuple[LiveNode, int]) -> Iterator[None]:
    """The NAT, as an nftables table of this test's own, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft (nftables) to play the NAT on loopback")
    table = f"ivagate_test_nat_{os.getpid()}"
    node_ip = faces_node[0].sip.split(":")[0]
    subprocess.run(["nft", "-f", "-"], input=nat_rules(table, node_ip), text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], check=False)


@pytest.fixture(scope="module")
def faces_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveNode, int]]:
    """A real FreeSWITCH trusting only the edge's private face, with TLS: (node, TLS port)."""
    binary = find_binary()
    if binary is None:
        pytest.skip(SKIP_REASON)
    certs = tmp_path_factory.mktemp("fs-tls")
    cert, key = self_signed(certs / "node", "media-node")
    (certs / "agent.pem").write_text(Path(cert).read_text() + Path(key).read_text())
    shutil.copy(cert, certs / "cafile.pem")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tls_port = int(probe.getsockname()[1])
    env = {
        "IVAGATE_FS_TLS": "true",
        "IVAGATE_FS_TLS_PORT": str(tls_port),
        "IVAGATE_FS_TLS_CERT_DIR": str(certs),
    }
    work = tmp_path_factory.mktemp("freeswitch")
    with live_freeswitch(binary, None, work, edge_cidrs=f"{MEDIA_ADDR}/32", settings=env) as node:
        yield node, tls_port


@pytest.fixture
async def esl(faces_node: tuple[LiveNode, int]) -> AsyncIterator[EslClient]:
    async with esl_session(faces_node[0]) as client:
        yield client


def node_uri(node: LiveNode, tls_port: int, transport: str) -> str:
    host, port = node.sip.split(":")
    if transport == "tls":
        return f"sip:{host}:{tls_port};transport=tls"
    return f"sip:{host}:{port}" + ("" if transport == "udp" else f";transport={transport}")


@pytest.mark.usefixtures("nat_table")
@pytest.mark.parametrize("node_transport", ["udp", "tcp", "tls"])
async def test_node_behind_the_private_face_takes_the_call_and_reaches_ringcx(
    faces_node: tuple[LiveNode, int], esl: EslClient, tmp_path: Path, node_transport: str
) -> None:
    """RingCX calls the public address; the node, trusting only the private face, parks the
    call; its INFO and BYE, sent along the Route set, reach RingCX over its connection."""
    node, tls_port = faces_node
    setup = EdgeSetup(
        nodes=[node_uri(node, tls_port, node_transport)],
        listen=PUBLIC_LISTEN,
        tls_dir=write_certificates(tmp_path),
        defines={"ADVERTISE_ADDR": PUBLIC, "MEDIA_ADDR": MEDIA_ADDR},
    )
    work = tmp_path / "edge"
    work.mkdir()
    with Edge(work, setup) as edge:
        await set_gate(esl)
        did = f"1555{secrets.randbelow(10**7):07d}"
        plan = CallPlan(
            target=f"{PUBLIC}:{edge.tls_port}",
            transport="tls",
            local_host=CALLER,
            did=did,
            headers={"X-Bot-Id": "demo"},
            bye="never",
            timeout=20,
        )
        task = asyncio.create_task(run_call(plan))
        try:
            uuid = (await parked(esl, did))["uuid"]
        except AssertionError:
            report = await task
            raise AssertionError(report.render() + edge.log()[-3000:]) from None
        assert (await esl.api(f"uuid_answer {uuid}")).startswith("+OK")
        # the emulator knows its dialog once it has read the 200: an INFO in the same read
        # would be refused as outside the dialog
        await asyncio.sleep(0.5)
        body = encode_info({"intent": "done"}, final=True, max_bytes=16384)
        assert (await esl.api(send_info_command(uuid, body))).startswith("+OK")
        await asyncio.sleep(0.5)  # the INFO's transaction before the BYE
        assert (await esl.api(f"uuid_kill {uuid}")).startswith("+OK")
        report = await task
    assert report.ok, report.render() + edge.log()[-3000:]
    assert [info.json for info in report.infos] == [json.loads(body.text)]
    assert report.bye_from_remote
