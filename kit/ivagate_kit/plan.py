"""What one emulated RingCX call does: where, how, with which DID and headers, when to hang up."""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from typing import Literal, get_args

from ivagate_kit.audio import RATE, play_frames
from ivagate_kit.dtmf import DIGITS, DtmfMode
from ivagate_kit.transport import Address, TransportName

__all__ = ["ByePolicy", "CallPlan", "Refresh"]

ByePolicy = Literal["final", "never"] | float
# a mid-call target refresh (session refresh, hold): re-INVITE with the offer again, or UPDATE
Refresh = Literal["reinvite", "update"]


@dataclass
class CallPlan:
    """One call's settings; invalid values raise ValueError at construction."""

    target: str  # "host:port" ("[v6]:port"); the port defaults to 5060, or 5061 for tls
    transport: TransportName = "udp"
    did: str = "15550001000"
    caller: str = "+16505550100"
    headers: dict[str, str] = field(default_factory=dict)
    srtp: bool | None = None  # None: offer SDES-SRTP iff the transport is tls
    bye: ByePolicy = "final"  # after the final intent, N seconds after 200 OK, or never
    ping_interval: float = 2.0  # RFC 5626 CRLFCRLF pings on tcp/tls; 0 turns them off
    local_host: str = "127.0.0.1"
    tls_verify: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float = 30.0  # for the INVITE's answer, then again for the call to end
    expect: int = 200  # the INVITE's expected final status
    # sent in order once the call is answered, each with RingCX's plain Contact (no alias)
    refresh: list[Refresh] = field(default_factory=list)
    dtmf: str = ""  # keys pressed once answered (0-9 * # A-D)
    dtmf_mode: DtmfMode = "rfc2833"  # as RTP telephone-events, or one SIP INFO per key
    dtmf_delay: float = 1.0  # seconds after the 200 OK before the first key
    info_answer: int | Literal["never"] = 200  # status for a well-formed INFO, or no answer
    ack_delay: float = 0.0  # seconds between the 2xx and our ACK (an INFO may come meanwhile)
    # False: signalling only, the offer names a port no socket is bound to (load runs)
    media: bool = True
    play: str = "silence"  # once answered: "silence", "tone:HZ[:DBFS[:SECONDS]]" or a WAV path
    record: str | None = None  # a WAV file (8 kHz mono) of what the caller heard
    tones: list[int] = field(default_factory=lambda: [440])  # Hz whose power the report gives

    def __post_init__(self) -> None:
        if self.transport not in get_args(TransportName):
            raise ValueError(f"transport must be udp, tcp or tls, not {self.transport!r}")
        if any(r not in get_args(Refresh) for r in self.refresh):
            raise ValueError(f"refresh must be 'reinvite' or 'update', not {self.refresh!r}")
        if isinstance(self.bye, str) and self.bye not in ("final", "never"):
            raise ValueError(f"bye must be 'final', 'never' or seconds, not {self.bye!r}")
        if not isinstance(self.bye, str) and self.bye < 0:
            raise ValueError("bye seconds must not be negative")
        if self.info_answer != "never" and not (
            isinstance(self.info_answer, int) and 200 <= self.info_answer <= 699
        ):
            raise ValueError(f"info_answer must be 200-699 or 'never', not {self.info_answer!r}")
        if self.timeout <= 0 or self.ping_interval < 0 or self.ack_delay < 0:
            raise ValueError("timeout must be positive, ping_interval and ack_delay not negative")
        self.address  # noqa: B018 - validate the target now, not mid-call
        if self.dtmf_mode not in get_args(DtmfMode):
            raise ValueError(f"dtmf_mode must be info or rfc2833, not {self.dtmf_mode!r}")
        if self.dtmf.strip(DIGITS):
            raise ValueError(f"dtmf may hold only {DIGITS}, not {self.dtmf!r}")
        if self.dtmf_delay < 0:
            raise ValueError("dtmf_delay must not be negative")
        if self.dtmf and self.dtmf_mode == "rfc2833" and not self.media:
            raise ValueError("RFC 2833 DTMF goes in the RTP stream: it needs media")
        try:
            play_frames(self.play)
        except (OSError, EOFError, wave.Error) as e:
            raise ValueError(f"play: {self.play!r} is no readable WAV file: {e}") from None
        if any(not 0 < hz < RATE // 2 for hz in self.tones):
            raise ValueError(f"tones must be between 0 and {RATE // 2} Hz, not {self.tones!r}")

    @property
    def address(self) -> Address:
        host, sep, port = self.target.rpartition(":")
        if not sep or "]" in port or (":" in host and not host.startswith("[")):
            host, port = self.target, ""
        if port and not port.isdigit():
            raise ValueError(f"target must be host:port, not {self.target!r}")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"target has no host: {self.target!r}")
        return host, int(port) if port else (5061 if self.transport == "tls" else 5060)

    @property
    def offer_srtp(self) -> bool:
        return self.transport == "tls" if self.srtp is None else self.srtp
