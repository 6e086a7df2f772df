"""The ``ivagate`` command: ``check-config``, ``run``'s startup and orderly shutdown, and the
commands other packages add (``ivagate.commands`` entry points)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import aiohttp
import pytest

from ivagate import cli
from ivagate.cli import Server, main
from ivagate.settings import Settings
from ivagate_kit.esl_double import EslDouble


def test_check_config_lists_every_invalid_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two bad fields give two lines naming their paths; the exit status is 2."""
    monkeypatch.delenv("IVAGATE_ESL__PASSWORD", raising=False)
    monkeypatch.setenv("IVAGATE_ESL__PORT", "0")
    monkeypatch.setenv("IVAGATE_CALL__INFO_MAX_BYTES", "ten")
    assert main(["check-config"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("esl.password: Field required") for line in lines)
    assert any(line.startswith("esl.port: Input should be greater than") for line in lines)
    assert any(
        line.startswith("call.info_max_bytes: Input should be a valid integer") for line in lines
    )


def test_check_config_names_unknown_bots(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    """A DID routed to a bot nobody registered is reported with its path (TOML file)."""
    monkeypatch.setenv("IVAGATE_CONFIG_FILE", "")  # restored after main() sets it
    config = tmp_path / "ivagate.toml"
    config.write_text('[esl]\npassword = "s3cret"\n[routing.dids]\n"15550001000" = "nope"\n')
    assert main(["--config", str(config), "check-config"]) == 2
    assert "routing.dids.15550001000: unknown bot 'nope'" in capsys.readouterr().err


def test_kit_command_without_the_kit_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no package adding commands, ``ivagate emulate`` exits 2 naming ivagate-kit."""
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    with pytest.raises(SystemExit) as exc:
        main(["emulate", "127.0.0.1:5060"])
    assert exc.value.code == 2
    assert "install ivagate-kit" in capsys.readouterr().err


def test_check_config_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid configuration with the built-in bots passes, without a warning."""
    monkeypatch.setenv("IVAGATE_ESL__PASSWORD", "s3cret")
    monkeypatch.setenv("IVAGATE_ROUTING__DIDS", '{"15550001000": "demo"}')
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert "configuration OK" in out and err == ""


def test_check_config_warns_when_nothing_routes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No DID and no header route: a warning (every call gets 404), not a failure."""
    monkeypatch.setenv("IVAGATE_ESL__PASSWORD", "s3cret")
    assert main(["check-config"]) == 0
    out, err = capsys.readouterr()
    assert "configuration OK" in out
    assert "warning: no routing.dids and no routing.bot_header: every call gets 404" in err


def test_check_config_takes_webhook_options_from_nested_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The webhook bot's options as one environment variable each, the fallback as JSON."""
    monkeypatch.setenv("IVAGATE_ESL__PASSWORD", "s3cret")
    monkeypatch.setenv("IVAGATE_ROUTING__DIDS", '{"15550001000": "webhook"}')
    prefix = "IVAGATE_CALL__BOT_OPTIONS__WEBHOOK__"
    monkeypatch.setenv(f"{prefix}URL", "https://hooks.example/ivagate")
    monkeypatch.setenv(f"{prefix}SECRET", "k")
    monkeypatch.setenv(f"{prefix}FALLBACK", '{"action": "hangup"}')
    assert main(["check-config"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(f"{prefix}FALLBACK", '{"action": "say", "text": "hi"}')
    assert main(["check-config"]) == 2
    assert "call.bot_options.webhook: fallback" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "https://hooks.example/ivagate"}, "secret"),
        ({"url": "http://hooks.example/ivagate", "secret": "k"}, "is not https://"),
    ],
    ids=["no-secret", "http"],
)
def test_check_config_refuses_an_unsafe_webhook(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: dict[str, str],
    message: str,
) -> None:
    """A webhook routed to without a secret, or at an http:// URL, fails the check."""
    monkeypatch.setenv("IVAGATE_ESL__PASSWORD", "s3cret")
    monkeypatch.setenv("IVAGATE_ROUTING__DIDS", '{"15550001000": "webhook"}')
    monkeypatch.setenv("IVAGATE_CALL__BOT_OPTIONS", json.dumps({"webhook": options}))
    assert main(["check-config"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("call.bots: bot 'webhook': call.bot_options.webhook: ")
    assert message in line


async def test_run_starts_and_shuts_down_in_order(
    double: EslDouble, settings_for: Callable[..., Settings]
) -> None:
    """run: ESL up, gate open, API serving; on a signal: gate closed, API and ESL closed."""
    with socket.socket() as probe:  # a free port for the API
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(settings_for(api={"port": port}))
    await server.startup()
    await double.wait_for(lambda: double.global_vars.get("ivagate_ready") == "true")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        server.handle_exit()  # as SIGTERM does
        await asyncio.wait_for(server.main_loop(), 1)
        await server.shutdown()
        assert double.global_vars["ivagate_ready"] == "false"
        assert not double.connected
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{port}/healthz")
