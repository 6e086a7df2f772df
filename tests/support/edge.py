"""Run the repo's Kamailio edge and SIPp on loopback, for the edge tests and benchmark.

``Edge`` starts ``kamailio/kamailio.cfg`` exactly as shipped, with site values given as
``-A`` defines (free ports, throwaway TLS certificates; the INFO report token, a secret, in
``kamailio-local.cfg`` instead, as the image gives it) and its allowlist, dispatcher list
and TLS profiles written by ``kamailio/render-site``, as every other runner writes them.
``run_sipp``/``start_sipp`` drive the SIPp scenarios in ``tests/kamailio/scenarios``.
Nothing here fakes SIP: both are the real Debian binaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ivagate_kit import CallPlan
from ivagate_kit.tls import self_signed
from ivagate_kit.transport import TransportName

__all__ = [
    "CALLER",
    "EDGE_CFG",
    "EDGE_HOST",
    "NODE_HOSTS",
    "OUTSIDER",
    "PROBE",
    "REPORT_TOKEN",
    "SCENARIOS",
    "ConnectionSpy",
    "Edge",
    "EdgeSetup",
    "SippRun",
    "emulator_plan",
    "free_port",
    "start_caller",
    "start_node",
    "start_sipp",
    "stop_all_sipp",
    "write_certificates",
]

REPO = Path(__file__).resolve().parents[2]
EDGE_CFG = REPO / "kamailio" / "kamailio.cfg"
RENDER_SITE = REPO / "kamailio" / "render-site"
SCENARIOS = REPO / "tests" / "kamailio" / "scenarios"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
READY_TIMEOUT = 20.0

# Loopback addresses by role. The edge tells RingCX from media nodes by source IP.
EDGE_HOST = "127.0.0.1"
CALLER = "127.0.0.2"  # RingCX, on the allowlist
OUTSIDER = "127.0.0.3"  # not on the allowlist
PROBE = "127.0.0.5"  # health-probe group of the allowlist
NODE_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")  # media nodes
REPORT_TOKEN = "test-report-token"  # the edge's REPORT_TOKEN: every report line starts with it


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free TCP+UDP port on {host}")


def write_certificates(directory: Path) -> Path:
    """Throwaway TLS files as the shipped tls.cfg names them: tls.crt/tls.key for the edge,
    client.crt/client.key for a caller, and ca.crt (the self-signed client.crt, its own
    trust anchor) for the client certificate check."""
    for name, stem in (("localhost", "tls"), ("ringcx-client", "client")):
        cert, key = self_signed(directory / stem, name)
        shutil.move(cert, directory / f"{stem}.crt")
        shutil.move(key, directory / f"{stem}.key")
    shutil.copy(directory / "client.crt", directory / "ca.crt")
    return directory


@dataclass
class EdgeSetup:
    """Site values for one edge: who is allowed, which media nodes, which switches."""

    allow: list[str] = field(default_factory=lambda: [f"{CALLER}/32"])  # RingCX, group 1
    probes: list[str] = field(default_factory=list)  # health probes, group 2
    nodes: list[str] = field(default_factory=list)  # dispatcher URIs, set 1, in priority order
    tls: bool = True
    tls_dir: Path | None = None  # holds tls.crt, tls.key (and ca.crt): see ``tls_files``
    client_verify: bool = False  # render-site tls --client-verify
    listen: str = EDGE_HOST
    shm_mb: int = 64  # shared memory; transactions live in it (benchmarks need more)
    defines: dict[str, str] = field(default_factory=dict)  # e.g. {"MEDIA_ANSWER_TIMEOUT": "1500"}


def render_site(*args: str) -> str:
    """The output of ``kamailio/render-site ARGS``: a site file as every runner writes it."""
    return subprocess.run(
        [str(RENDER_SITE), *args], capture_output=True, text=True, check=True
    ).stdout


class Edge:
    """One Kamailio process running the shipped config; a context manager."""

    def __init__(self, workdir: Path, setup: EdgeSetup) -> None:
        self.workdir = workdir
        self.setup = setup
        self.host = setup.listen
        self.sip_port = free_port(self.host)
        self.tls_port = free_port(self.host)
        self.http_port = free_port("127.0.0.1")
        self.report_port = free_port(NODE_HOSTS[0])  # the nodes' controllers: INFO reports
        self.allowlist = workdir / "allowlist.address"
        self.dispatcher = workdir / "dispatcher.list"
        self.tls_config = workdir / "tls.cfg"
        self.log_path = workdir / "kamailio.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def sip(self) -> str:
        return f"{self.host}:{self.sip_port}"

    @property
    def tls(self) -> str:
        return f"{self.host}:{self.tls_port}"

    def reports_to(self, node_host: str) -> dict[str, Any]:
        """The ``edge`` settings section of a controller on ``node_host`` that takes this
        edge's reports of RingCX's answers to INFOs."""
        listen = f"{node_host}:{self.report_port}"
        return {"listen": listen, "edges": [self.host], "token": REPORT_TOKEN}

    def write_allowlist(self, allow: Sequence[str], probes: Sequence[str] = ()) -> None:
        self.allowlist.write_text(render_site("allowlist", " ".join(allow), " ".join(probes)))

    def _defines(self) -> list[str]:
        s = self.setup
        values = {
            "LISTEN_ADDR": self.host,
            "SIP_PORT": str(self.sip_port),
            "TLS_PORT": str(self.tls_port),
            "HTTP_PORT": str(self.http_port),
            "REPORT_PORT": str(self.report_port),
            "ALLOWLIST_FILE": f'"{self.allowlist}"',
            "DISPATCHER_LIST": f'"{self.dispatcher}"',
            "CHILDREN": "2",
            "TCP_CHILDREN": "2",
            **s.defines,
        }
        switches = ["TESTING"]
        if s.tls:
            switches.append("WITH_TLS")
            values["TLS_CONFIG"] = f'"{self.tls_config}"'
        args = []
        for name in switches:
            args += ["-A", name]
        for name, value in values.items():
            args += ["-A", f"{name}={value}"]
        return args

    def _write_tls_config(self) -> None:
        """The shipped TLS profiles, with the certificate directory moved to ``tls_dir``."""
        if self.setup.tls_dir is None:
            raise ValueError("EdgeSetup.tls_dir is required with tls=True")
        switch = ["--client-verify"] if self.setup.client_verify else []
        self.tls_config.write_text(render_site("tls", *switch, str(self.setup.tls_dir)))

    def start(self) -> Edge:
        self.write_allowlist(self.setup.allow, self.setup.probes)
        # priorities fall down the list, so DS_ALG=8 (by priority) tries nodes in order
        self.dispatcher.write_text(render_site("dispatcher", *self.setup.nodes))
        if self.setup.tls:
            self._write_tls_config()
        # The token goes where the image's entrypoint puts it, not on the command line:
        # kamailio.cfg imports kamailio-local.cfg from the working directory first.
        local = self.workdir / "kamailio-local.cfg"
        local.write_text(f'#!define REPORT_TOKEN "{REPORT_TOKEN}"\n')
        local.chmod(0o600)
        runtime = self.workdir / "run"
        runtime.mkdir(exist_ok=True)
        cmd = [KAMAILIO, "-f", str(EDGE_CFG), "-DD", "-E", "-Y", str(runtime)]
        cmd += ["-m", str(self.setup.shm_mb)]
        # TLSF, as every shipped start uses (kamailio/README.md "Tuning")
        cmd += ["-M", "8", "-x", "tlsf", "-X", "tlsf", *self._defines()]
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, cwd=self.workdir, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"kamailio exited {self._proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                self.rpc("core.version")
                return
            time.sleep(0.1)
        raise RuntimeError(f"kamailio not ready in {READY_TIMEOUT}s:\n{self.log()}")

    def rpc(self, method: str, *params: Any) -> Any:
        """Call a JSON-RPC method on the edge's loopback HTTP listener; return ``result``."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/RPC",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:  # JSON-RPC errors come with HTTP 500
            answer = json.loads(error.read() or b"{}") or {"error": str(error)}
        if "error" in answer:
            raise RuntimeError(f"RPC {method} failed: {answer['error']}")
        return answer.get("result")

    def http_get(self, path: str, port: int | None = None) -> tuple[int, str]:
        """GET ``path`` from the control listener (or another port of the edge)."""
        host = "127.0.0.1" if port is None else self.host
        url = f"http://{host}:{port or self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def node_flags(self) -> dict[str, str]:
        """Media node URI -> dispatcher state flags ("AP" active, "IP" inactive, "DX"...)."""
        result = self.rpc("dispatcher.list")
        flags: dict[str, str] = {}
        for record in result.get("RECORDS", []):
            for target in record["SET"]["TARGETS"]:
                flags[target["DEST"]["URI"]] = target["DEST"]["FLAGS"]
        return flags

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _processes(self) -> list[psutil.Process]:
        assert self._proc is not None
        main = psutil.Process(self._proc.pid)
        return [main, *main.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every Kamailio process of this edge."""
        total = 0.0
        for proc in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def command_lines(self) -> list[str]:
        """The command line of every Kamailio process of this edge, as ``ps`` shows it."""
        lines = []
        for proc in self._processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                lines.append(" ".join(proc.cmdline()))
        return lines

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> Edge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def emulator_plan(edge: Edge, transport: TransportName, **fields: Any) -> CallPlan:
    """A call from RingCX's address (CALLER) to ``edge`` over ``transport``, for ``run_call``."""
    target = edge.tls if transport == "tls" else edge.sip
    fields.setdefault("timeout", 15)
    return CallPlan(target=target, transport=transport, local_host=CALLER, **fields)


class ConnectionSpy:
    """A live TCP listener that accepts and counts every connection attempt: put where the
    edge must never connect (a caller's Contact, the address of its vanished connection), so
    a connection attempt is counted instead of being refused unseen."""

    def __init__(self, host: str, port: int = 0) -> None:
        # SO_REUSEADDR (create_server's default here): the address of a connection just
        # closed may still be in TIME_WAIT
        self.sock = socket.create_server((host, port))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.attempts: list[tuple[str, int]] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.attempts.append(peer)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join()


@dataclass
class SippRun:
    """A SIPp process; ``wait()`` returns its exit code (0: every call succeeded)."""

    proc: subprocess.Popen[bytes]
    trace: Path
    output: Path

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def messages(self) -> str:
        """Every message SIPp sent and received (its -trace_msg file)."""
        return self.trace.read_text(errors="replace") if self.trace.exists() else ""

    def received(self, first_line: str, *, sent: bool = False) -> list[str]:
        """Messages SIPp received (or ``sent``) whose first line starts with ``first_line``."""
        wanted = "message sent" if sent else "message received"
        found = []
        for block in re.split(r"^-{47} .*$", self.messages(), flags=re.MULTILINE)[1:]:
            kind, _, message = block.strip("\n").partition("\n\n")
            if wanted in kind and message.startswith(first_line):
                found.append(message)
        return found

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def wait_listening(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Return once SIPp holds its socket on ``host:port``: a call sent before that finds
        nobody there, and under load SIPp can take longer to start than the edge waits."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(psutil.NoSuchProcess):
                sockets = psutil.Process(self.proc.pid).net_connections("inet")
                if any(tuple(s.laddr) == (host, port) for s in sockets):
                    return
            assert self.proc.poll() is None, f"SIPp exited before listening:\n{self.text()}"
            assert time.monotonic() < deadline, f"SIPp not on {host}:{port} after {timeout} s"
            time.sleep(0.02)


# every SIPp started here, so a test's teardown can stop the ones still waiting for calls
STARTED: list[SippRun] = []


def start_sipp(
    scenario: str | Path,
    workdir: Path,
    *,
    remote: str | None = None,
    transport: str = "u1",
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
    keys: dict[str, str] | None = None,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    timeout: float = 30.0,
    name: str | None = None,
    extra: Sequence[str] = (),
    trace: bool = True,
) -> SippRun:
    """Start SIPp with ``tests/kamailio/scenarios/<scenario>.xml`` (or the file ``scenario``)
    in the background.

    ``trace``: keep every message in a file (``messages()``); off for benchmarks.
    """
    path = scenario if isinstance(scenario, Path) else SCENARIOS / f"{scenario}.xml"
    label = name or path.stem
    messages = workdir / f"sipp-{label}-messages.log"
    output = workdir / f"sipp-{label}.out"
    cmd = [SIPP, "-sf", str(path), "-t", transport, "-i", local_ip]
    cmd += ["-p", str(local_port or free_port(local_ip)), "-m", str(calls), "-nostdin"]
    cmd += ["-timeout", f"{timeout}s", "-timeout_error", "-max_recv_loops", "1000"]
    cmd += ["-trace_err", "-error_file", str(workdir / f"sipp-{label}-errors.log")]
    if trace:
        cmd += ["-trace_msg", "-message_file", str(messages)]
    if rate is not None:
        cmd += ["-r", str(rate), "-rp", "1000"]
    if limit is not None:
        cmd += ["-l", str(limit)]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, value]
    cmd += list(extra)
    if remote:
        cmd.append(remote)
    with output.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    run = SippRun(proc, messages, output)
    STARTED.append(run)
    return run


def stop_all_sipp() -> None:
    """Stop every SIPp this process started that still runs (test teardown)."""
    while STARTED:
        STARTED.pop().stop()


def start_node(
    workdir: Path,
    port: int,
    *,
    host: str = NODE_HOSTS[0],
    scenario: str = "uas_answer",
    pause_ms: int = 100,
    keys: dict[str, str] | None = None,
    calls: int = 1,
    transport: str = "u1",
    trace: bool = True,
    extra: Sequence[str] = (),
) -> SippRun:
    """A SIPp media node, listening when this returns; it answers OPTIONS probes by itself
    (-aa)."""
    node = start_sipp(
        scenario,
        workdir,
        transport=transport,
        local_ip=host,
        local_port=port,
        keys=keys,
        calls=calls,
        name=f"node-{host}-{port}",
        extra=["-aa", "-d", str(pause_ms), *extra],
        trace=trace,
    )
    node.wait_listening(host, port)
    return node


def start_caller(
    edge: Edge,
    workdir: Path,
    *,
    transport: str = "u1",
    host: str = CALLER,
    contact_port: int | None = None,
    calls: int = 1,
    rate: float | None = None,
    timeout: float = 20.0,
    name: str = "caller",
    trace: bool = True,
    scenario: str | Path = "uac_call",
    extra: Sequence[str] = (),
) -> SippRun:
    """A SIPp RingCX caller (uac_call.xml, or ``scenario``) toward the edge's UDP/TCP port.

    ``contact_port``: the port its Contact names (default: SIPp's own, right for UDP).
    """
    port = free_port(host)
    return start_sipp(
        scenario,
        workdir,
        remote=edge.sip,
        transport=transport,
        local_ip=host,
        local_port=port,
        keys={"did": "15550001000", "contact_port": str(contact_port or port)},
        calls=calls,
        rate=rate,
        timeout=timeout,
        name=name,
        extra=extra,
        trace=trace,
    )
