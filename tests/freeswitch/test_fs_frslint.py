"""frslint (PyPI), a FreeSWITCH XML linter, over the tree: static analysis and code style.

frslint follows the includes, checks dialplan regexes, empty extensions and $${variables}
against "set" (it does not know "env-set", so the event-socket password, defined only from the
environment, is beyond it). scripts/install-deps installs it into run/tools/frslint, apart from
the shared virtualenv, because it ships top-level modules named debug, lint and log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fs_tree import CONF_DIR

FRSLINT_DIR = CONF_DIR.parent / "run" / "tools" / "frslint"

pytestmark = pytest.mark.skipif(
    not (FRSLINT_DIR / "frslint.py").exists(),
    reason=f"frslint is not installed in {FRSLINT_DIR}: run scripts/install-deps",
)


def frslint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import frslint; frslint.main()", *args],
        env={**os.environ, "PYTHONPATH": str(FRSLINT_DIR)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def analyze(root: Path) -> dict[str, Any]:
    result = frslint("analyze", "--format", "json", str(root / "freeswitch.xml"))
    report: dict[str, Any] = json.loads(result.stdout)
    assert result.returncode == (1 if report["summary"]["errors"] else 0), result.stderr
    return report


def test_frslint_finds_no_issue_in_the_tree() -> None:
    """frslint analyze reports nothing on freeswitch/."""
    report = analyze(CONF_DIR)
    assert report["issues"] == []


def test_frslint_style_check_passes() -> None:
    """frslint lint (indentation, whitespace, line length) is clean on freeswitch/."""
    result = frslint("lint", str(CONF_DIR / "freeswitch.xml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_frslint_would_catch_a_broken_dialplan(tmp_path: Path) -> None:
    """A copy of the tree with a broken regex and an undefined variable fails the analysis."""
    broken = tmp_path / "freeswitch"
    shutil.copytree(CONF_DIR, broken)
    dialplan = broken / "dialplan" / "ivagate.xml"
    text = dialplan.read_text().replace('expression="^true$"', 'expression="^(true$"')
    dialplan.write_text(text.replace("ivagate_fs_max_call_seconds}", "ivagate_fs_missing}"))
    kinds = {issue["type"] for issue in analyze(broken)["issues"]}
    assert kinds == {"invalid-regex", "undefined-variable"}
