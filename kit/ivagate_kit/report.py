"""What one emulated call saw and concluded: timeline, INFO bodies, checks; text and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CallReport", "Check", "ReceivedInfo", "TimelineEntry"]

TimelineEntry = tuple[float, str, str]  # (seconds since start, "->" or "<-", summary)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ReceivedInfo:
    at: float  # seconds since the call started
    content_type: str
    body: str
    json: dict[str, Any] | None  # the body when it is a JSON object


@dataclass
class CallReport:
    """Everything observed on one call; ``ok`` when every check passed."""

    target: str
    transport: str
    did: str
    call_id: str = ""
    checks: list[Check] = field(default_factory=list)
    invite_status: int | None = None
    infos: list[ReceivedInfo] = field(default_factory=list)
    contact_attempts: int = 0
    bye_from_remote: bool = False
    bye_status: int | None = None  # final status of our BYE, when we sent one
    answer_after: float | None = None  # seconds from INVITE to its final response
    pings_sent: int = 0
    pongs_received: int = 0
    duration: float = 0.0
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, passed, detail))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["timeline"] = [
            {"at": round(at, 3), "dir": d, "what": what} for at, d, what in self.timeline
        ]
        return out

    def render(self) -> str:
        """The readable report a person reads after a call."""
        status = self.invite_status if self.invite_status is not None else "no answer"
        lines = [
            f"Call {self.call_id}  {self.transport.upper()} -> {self.target}  DID {self.did}",
            f"  INVITE: {status}   duration {self.duration:.2f}s   "
            f"pings sent {self.pings_sent}, pongs {self.pongs_received}   "
            f"Contact attempts {self.contact_attempts}",
            "Timeline:",
            *(f"  {at:8.3f}s {d} {what}" for at, d, what in self.timeline),
        ]
        if self.infos:
            lines.append("INFO bodies:")
            lines += [f"  {i.at:8.3f}s [{i.content_type}] {i.body.strip()}" for i in self.infos]
        lines.append("Checks:")
        for c in self.checks:
            detail = f"  ({c.detail})" if c.detail else ""
            lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.name}{detail}")
        passed = sum(c.passed for c in self.checks)
        lines.append(f"Result: {'PASS' if self.ok else 'FAIL'} ({passed}/{len(self.checks)})")
        return "\n".join(lines)
