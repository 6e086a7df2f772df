"""The command lines: ``emulate`` exit codes and JSON, ``stand-in``, and both installed as
``ivagate-kit <command>`` and ``ivagate <command>``."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ivagate_kit.cli import main, run, stand_in_main
from ivagate_kit.media_node import MediaNode, NodeScript

BIN = Path(sys.executable).parent  # the virtualenv's console scripts


async def _node_main(script: NodeScript, argv: list[str]) -> tuple[int, MediaNode]:
    async with MediaNode(transport="tcp", script=script) as node:
        # main() runs its own event loop, so it runs in a thread beside this one.
        target = f"127.0.0.1:{node.port}"
        code = await asyncio.to_thread(main, [target, "-t", "tcp", "--timeout", "5", *argv])
    return code, node


async def test_emulate_prints_json_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the report as JSON; every check passed, so the exit code is 0."""
    script = NodeScript(infos=[{"final": True}], info_interval=0.0)
    argv = ["--json", "--did", "15550009999", "-H", "X-Bot-Id: demo", "--ping-interval", "0"]
    code, node = await _node_main(script, argv)
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["invite_status"] == 200
    assert report["infos"][0]["json"] == {"final": True}
    assert node.invites[0].uri.startswith("sip:15550009999@")
    assert node.invites[0].headers["X-Bot-Id"] == "demo"


async def test_emulate_presses_keys_as_info(capsys: pytest.CaptureFixture[str]) -> None:
    """--dtmf with --dtmf-mode info: one dtmf-relay INFO per key, after --dtmf-delay."""
    script = NodeScript(infos=[{"final": True}], info_interval=0.3)
    argv = ["--dtmf", "7", "--dtmf-mode", "info", "--dtmf-delay", "0", "--ping-interval", "0"]
    code, node = await _node_main(script, argv)
    assert code == 0, capsys.readouterr().out
    [info] = [r for r in node.requests if r.method == "INFO"]
    assert info.body.startswith("Signal=7\r\n")


async def test_emulate_exits_1_on_a_failed_check(capsys: pytest.CaptureFixture[str]) -> None:
    """A failed check prints FAIL in the readable report and exits 1."""
    code, _ = await _node_main(NodeScript(answer=404), [])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  INVITE final status is 200  (404 Not Found (INVITE))" in out


async def test_emulate_load_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """--calls/--rate run several calls and print the summary line."""
    script = NodeScript(infos=[{"final": True}], info_interval=0.0)
    code, node = await _node_main(script, ["--calls", "3", "--rate", "100"])
    assert code == 0 and len(node.invites) == 3
    assert "Calls: 3  passed: 3  failed: 0" in capsys.readouterr().out


async def test_emulate_sends_refreshes_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    """--refresh (repeated) sends a re-INVITE then an UPDATE once the call is answered."""
    script = NodeScript(infos=[{"final": True}], info_interval=0.2)
    code, node = await _node_main(script, ["--refresh", "reinvite", "--refresh", "update"])
    assert code == 0, capsys.readouterr().out
    assert [r.method for r in node.requests if r.method in ("INVITE", "UPDATE")] == [
        "INVITE",
        "INVITE",
        "UPDATE",
    ]


@pytest.mark.parametrize(
    ("entry", "argv"),
    [
        (main, ["127.0.0.1:5060", "--bye", "soon"]),
        (main, ["127.0.0.1:5060", "-H", "no colon"]),
        (main, ["not a port:x"]),
        (main, ["127.0.0.1:5060", "--refresh", "hold"]),
        (main, ["127.0.0.1:5060", "--dtmf", "1", "--no-media"]),  # RFC 2833 needs RTP
        (main, ["127.0.0.1:5060", "--play", "tone:loud"]),
        (main, ["127.0.0.1:5060", "--play", "/nonexistent.wav"]),
        (stand_in_main, ["--answer", "ok"]),
        (stand_in_main, ["--answer", "100"]),
        (stand_in_main, ["--listen", "nohost"]),
        (stand_in_main, ["--info", "{not json"]),
        (run, []),
        (run, ["emulator", "127.0.0.1:5060"]),
    ],
)
def test_bad_arguments_exit_2(entry: object, argv: list[str]) -> None:
    """Bad arguments give a usage error (exit 2) before anything is sent or bound."""
    assert callable(entry)
    with pytest.raises(SystemExit) as exc:
        entry(argv)
    assert exc.value.code == 2


def test_stand_in_command_serves_a_call() -> None:
    """``ivagate-kit stand-in`` on port 0 takes a call from ``ivagate emulate`` (the controller's
    command running the kit's, found by its entry point)."""
    node = subprocess.Popen(
        [BIN / "ivagate-kit", "stand-in", "--listen", "127.0.0.1:0",
         "--info", '{"intent": "x", "final": true}', "--info-interval", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        banner = node.stdout.readline()
        port = re.search(r"127\.0\.0\.1:(\d+)", banner)
        assert port, banner
        emulate = subprocess.run(
            [BIN / "ivagate", "emulate", f"127.0.0.1:{port[1]}", "-t", "udp",
             "--timeout", "5"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert emulate.returncode == 0, emulate.stdout + emulate.stderr
        assert "Result: PASS" in emulate.stdout
    finally:
        node.terminate()
        node.wait(timeout=10)
    assert node.returncode == 0  # SIGTERM is a clean stop
