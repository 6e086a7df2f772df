"""What one emulated call saw and concluded: timeline, INFO bodies, checks; text and JSON."""

from __future__ import annotations

from array import array
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple

__all__ = ["CallReport", "Check", "Frame", "MediaReport", "ReceivedInfo", "TimelineEntry"]

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


class Frame(NamedTuple):
    """One PCMU packet as heard."""

    at: float  # arrival, wall clock (time.time()): comparable with other hosts' timestamps
    seq: int  # its RTP sequence number
    pcm: array[int]  # 16-bit samples, 8 kHz


@dataclass
class MediaReport:
    """The call's RTP: counts both ways, and what was heard (sound above ``audio.HEARD_DBFS``)."""

    packets_sent: int = 0
    first_sent_at: float | None = None  # epoch seconds: when the caller started talking
    packets_received: int = 0
    packets_lost: int = 0  # sequence numbers skipped, less those that came late
    out_of_order: int = 0  # packets older than one already received
    srtp: bool = False
    srtp_failures: int = 0  # packets that failed SRTP authentication
    heard_seconds: float = 0.0
    active_spans: list[tuple[float, float]] = field(default_factory=list)  # epoch seconds
    tone_power: dict[int, float] = field(default_factory=dict)  # Hz -> share of heard energy
    frames: list[Frame] = field(default_factory=list, repr=False)  # in arrival order

    def samples(self) -> array[int]:
        """Everything heard, frame after frame in arrival order (lost frames left out)."""
        return array("h", b"".join(frame.pcm for frame in self.frames))

    def to_dict(self) -> dict[str, Any]:
        """All but the frames."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "frames"}

    def render(self) -> str:
        spans = ", ".join(f"{start:.3f}-{end:.3f}" for start, end in self.active_spans[:5])
        more = f" (+{len(self.active_spans) - 5})" if len(self.active_spans) > 5 else ""
        tones = ", ".join(f"{hz} Hz {power:.2f}" for hz, power in self.tone_power.items())
        return "\n".join(
            [
                f"Media: RTP{'/SRTP' if self.srtp else ''}  sent {self.packets_sent}  "
                f"received {self.packets_received}  lost {self.packets_lost}  "
                f"out of order {self.out_of_order}  SRTP failures {self.srtp_failures}",
                f"  heard {self.heard_seconds:.2f}s in {len(self.active_spans)} span(s)"
                + (f": {spans}{more}" if spans else ""),
                f"  tone power: {tones or '-'}",
            ]
        )


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
    media: MediaReport | None = None  # None: signalling only (CallPlan.media off)
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, passed, detail))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, media=None))  # the frames stay out
        out["media"] = self.media.to_dict() if self.media else None
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
        if self.media:
            lines.append(self.media.render())
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
