"""The one place that turns a bot payload into a SIP INFO ``application/json`` command.

RingCX reads bot data from the INFO body; the final intent carries ``"final": true``
(spec "Bot Update"). ``final`` is therefore reserved: updates may not carry it and the
final intent always has it. The command syntax and escaping are the ones the FreeSWITCH
recordings show: ``uuid_send_info <uuid> application json '<body>'`` with ``\\`` written as
``\\\\`` and ``'`` as ``\\'`` inside the quotes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .bots.base import PayloadError

__all__ = ["InfoBody", "encode_info", "send_info_command"]

# ASCII-only keeps every byte of the ESL command in the 7-bit range FreeSWITCH parses.
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(", ", ": "))


@dataclass(frozen=True, slots=True)
class InfoBody:
    """A JSON body ready to send: its text and size in bytes."""

    text: str
    size: int


def encode_info(payload: Mapping[str, Any], *, final: bool, max_bytes: int) -> InfoBody:
    """Serialise ``payload``; ``final=True`` adds ``"final": true``. Raises ``PayloadError``."""
    if not isinstance(payload, Mapping):
        raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
    if not final and "final" in payload:
        raise PayloadError("'final' is reserved: send the final intent with finish()")
    body = {**payload, "final": True} if final else dict(payload)
    try:
        text = _ENCODER.encode(body)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from None
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadError(f"payload is {size} bytes, over the {max_bytes}-byte limit")
    return InfoBody(text=text, size=size)


def send_info_command(channel: str, body: InfoBody) -> str:
    """The ``uuid_send_info`` command (without ``api``/``bgapi``) for one channel."""
    quoted = body.text.replace("\\", "\\\\").replace("'", "\\'")
    return f"uuid_send_info {channel} application json '{quoted}'"
