"""Where this repository keeps the data recorded from a real FreeSWITCH 1.10.12."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ESL_RECORDINGS", "RECORDINGS"]

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "freeswitch-1.10.12"
ESL_RECORDINGS = RECORDINGS / "esl"  # what ivagate_kit.esl_double.EslDouble replays
