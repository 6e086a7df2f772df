"""What the bot-level tests' stand-in calls (no controller, no FreeSWITCH) share: one call's
identity as a bot reads it."""

from __future__ import annotations

__all__ = ["StandInIdentity"]


class StandInIdentity:
    """The identity properties of ``bots.base.Call``, fixed."""

    uuid = "8f1d6a3e-0000-4000-8000-000000000001"
    sip_call_id = "abc123@10.0.0.1"
    did = "15550001000"
    caller = "+16505550100"
    transport = "tls"
    source = "192.0.2.10:5061"
    srtp = True
