"""What is known about one call, kept after it ended and served by ``GET /calls``.

``CallRecord``: identities, bot, SRTP (from FreeSWITCH's answer), timestamps (epoch
seconds), ``outcome`` (``Outcome`` or ``None`` while active), ``ended``, ``hangup_cause``,
``error`` and ``infos``: one ``InfoRecord`` per INFO handed to FreeSWITCH (when, size,
FreeSWITCH's reply) and how RingCX answered it, which the edge reports (``EdgeReport``):
FreeSWITCH never reports an INFO's SIP response (see the fixtures README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from ivagate.bots.base import Outcome
from ivagate.invite import CallIdentity

__all__ = ["CallRecord", "EdgeReport", "InfoRecord"]


@dataclass(frozen=True, slots=True)
class EdgeReport:
    """How one INFO ended at the edge (kamailio.cfg, route[INFO_REPORT]).

    ``end``: ``reply`` (RingCX answered ``status``), ``timeout`` (no answer within the
    edge's INFO_REPLY_TIMEOUT; status 408) or ``no-ack`` (RingCX's ACK never came, the edge
    answered 500 and sent nothing); ``sent``/``ended``: the edge's clock, epoch seconds.
    """

    end: str
    status: int
    sent: float
    ended: float
    cseq: int
    call_id: str
    reason: str

    @classmethod
    def parse(cls, line: str) -> EdgeReport:
        """``info <end> <status> <sent> <ended> <cseq> <call-id> <reason phrase>``."""
        kind, end, status, sent, ended, cseq, call_id, *reason = line.split(" ", 7)
        if kind != "info":
            raise ValueError(f"not an INFO report: {line!r}")
        phrase = reason[0] if reason else ""
        return cls(end, int(status), float(sent), float(ended), int(cseq), call_id, phrase)


@dataclass(kw_only=True, slots=True)
class InfoRecord:
    """One INFO body handed to FreeSWITCH."""

    seq: int
    final: bool
    size: int
    handed_at: float
    reply: str = ""  # FreeSWITCH's answer to uuid_send_info ("+OK Success", "-ERR ...")
    # reported by the edge (EdgeReport): "reply", "timeout", "no-ack"; "no-report" when no
    # report came within edge.report_timeout; None while waiting, or with reports off
    result: str | None = None
    sip_status: int | None = None  # RingCX's final response (408: none in time)
    reason: str | None = None  # its reason phrase
    latency: float | None = None  # seconds from the edge sending the INFO to its answer

    @property
    def delivered(self) -> bool:
        """RingCX answered it 2xx."""
        return self.result == "reply" and self.sip_status is not None and self.sip_status < 300

    def describe(self) -> str:
        """How it ended, in words, for logs and the call's error."""
        if self.result == "reply":
            return f"RingCX answered {self.sip_status} {self.reason}".rstrip()
        if self.result == "timeout":
            return "RingCX did not answer (timeout at the edge)"
        return f"not delivered: {self.reason}"

    def reported(self, report: EdgeReport) -> None:
        self.result = report.end
        self.sip_status = report.status
        self.reason = report.reason
        self.latency = round(report.ended - report.sent, 6)


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
