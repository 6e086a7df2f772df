"""``ivagate check-config``: every invalid field with its path and reason."""

from __future__ import annotations

import pytest

from ivagate.cli import main


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


def test_check_config_ok(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid configuration with the built-in bots passes."""
    monkeypatch.setenv("IVAGATE_ESL__PASSWORD", "s3cret")
    assert main(["check-config"]) == 0
    assert "configuration OK" in capsys.readouterr().out
