"""A call described for the built-in bots' messages and log lines."""

from __future__ import annotations

from .base import Call

__all__ = ["invite_headers", "log_ids"]


def log_ids(call: Call) -> dict[str, str]:
    """Log record fields naming the call, as ``ivagate.log.CallLogger`` names them."""
    return {"uuid": call.uuid, "call_id": call.sip_call_id}


def invite_headers(call: Call) -> dict[str, list[str]]:
    """INVITE headers as name -> every value, names as the INVITE spelled them."""
    headers: dict[str, list[str]] = {}
    for name, value in call.headers.items():
        headers.setdefault(name, []).append(value)
    return headers
