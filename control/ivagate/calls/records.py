"""What is known about one call, kept after it ended and served by ``GET /calls``.

``CallRecord``: identities, bot, SRTP (from FreeSWITCH's answer), timestamps (epoch
seconds), ``outcome`` (``Outcome`` or ``None`` while active), ``ended``, ``hangup_cause``,
``error`` and ``infos``: one ``InfoRecord`` per INFO handed to FreeSWITCH (when, size,
FreeSWITCH's reply) with ``sip_status`` left ``None`` for the edge to fill in, because
FreeSWITCH never reports an INFO's SIP response (see the fixtures README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ivagate.bots.base import Outcome
from ivagate.invite import CallIdentity

__all__ = ["CallRecord", "InfoRecord"]


@dataclass(kw_only=True, slots=True)
class InfoRecord:
    """One INFO body handed to FreeSWITCH."""

    seq: int
    final: bool
    size: int
    handed_at: float
    reply: str = ""  # FreeSWITCH's answer to uuid_send_info ("+OK Success", "-ERR ...")
    sip_status: int | None = None  # the INFO's SIP response, reported by the edge if at all


@dataclass(kw_only=True, slots=True)
class CallRecord(CallIdentity):
    """What is known about one call; ``as_json()`` for the API.

    A dataclass, not a pydantic model: it is written to at every step of every call, and
    a model's attribute assignment cost more than all the rest of those steps (control/README.md,
    Benchmark).
    """

    bot: str | None = None
    srtp: bool | None = None  # None until answered: FreeSWITCH's answer decides it
    started_at: float
    answered_at: float | None = None
    final_at: float | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    hangup_cause: str | None = None
    error: str | None = None
    infos: list[InfoRecord] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def as_json(self) -> dict[str, Any]:
        """Every field and ``ended``, as JSON values."""
        fields: dict[str, Any] = _RECORD_JSON.dump_python(self, mode="json")
        return {**fields, "ended": self.ended}


_RECORD_JSON = TypeAdapter(CallRecord)
