"""SDP for one audio stream: the caller's offer, the node's answer, and the answer check.

RingCX offers encrypted media on TLS: ``RTP/SAVP`` with SDES keys (RFC 4568 ``a=crypto``,
suite AES_CM_128_HMAC_SHA1_80). The check is the one the caller can make from signalling
alone: same profile back, and a usable crypto line when SRTP was offered.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field

__all__ = ["SRTP_SUITE", "Sdp", "answer_problems", "build_answer", "build_offer"]

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"


@dataclass
class Sdp:
    """The parts of a session description these checks read."""

    connection: str = ""
    media: str = ""  # "audio 4000 RTP/SAVP 0 101"
    crypto: list[str] = field(default_factory=list)  # "1 AES_CM_128_HMAC_SHA1_80 inline:..."
    event_type: int | None = None  # payload type of telephone-event (RFC 4733 DTMF)

    @classmethod
    def parse(cls, text: str) -> Sdp:
        sdp = cls()
        for raw in text.splitlines():
            kind, _, value = raw.strip().partition("=")
            if kind == "c" and not sdp.connection:
                sdp.connection = value
            elif kind == "m" and not sdp.media:
                sdp.media = value
            elif kind == "a" and value.startswith("crypto:") and sdp.media:
                sdp.crypto.append(value.removeprefix("crypto:"))
            elif kind == "a" and value.startswith("rtpmap:") and sdp.media:
                payload_type, _, encoding = value.removeprefix("rtpmap:").partition(" ")
                if encoding.lower().startswith("telephone-event/") and payload_type.isdigit():
                    sdp.event_type = int(payload_type)
        return sdp

    @property
    def profile(self) -> str:
        parts = self.media.split()
        return parts[2] if len(parts) > 2 else ""

    @property
    def host(self) -> str:
        """The connection address ("IN IP4 <host>")."""
        return self.connection.split()[-1] if self.connection else ""

    @property
    def port(self) -> int:
        parts = self.media.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1

    @property
    def srtp_key(self) -> bytes | None:
        """The master key and salt of the first ``SRTP_SUITE`` crypto line, if any."""
        for line in self.crypto:
            _tag, suite, params, *_ = [*line.split(), "", ""]
            if suite == SRTP_SUITE and params.startswith("inline:"):
                # "inline:<key||salt>|<lifetime>|<MKI>:<length>" (RFC 4568 6.1)
                key = params.removeprefix("inline:").partition("|")[0]
                try:
                    return base64.b64decode(key, validate=True)
                except ValueError:
                    return None
        return None


def _inline_key() -> str:
    # 16-byte master key + 14-byte salt (RFC 4568 6.2.1 for the AES_CM_128 suites).
    return "inline:" + base64.b64encode(secrets.token_bytes(30)).decode()


def _session(host: str, port: int, profile: str, crypto: str | None, name: str) -> str:
    sess = secrets.randbelow(2**31)
    lines = [
        "v=0",
        f"o={name} {sess} {sess} IN IP4 {host}",
        f"s={name}",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} {profile} 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ]
    if crypto:
        lines.append(f"a=crypto:{crypto}")
    return "\r\n".join(lines) + "\r\n"


def build_offer(host: str, port: int, srtp: bool, name: str = "ringcx") -> str:
    """PCMU + telephone-event; ``RTP/SAVP`` with one SDES key when ``srtp``."""
    crypto = f"1 {SRTP_SUITE} {_inline_key()}" if srtp else None
    return _session(host, port, "RTP/SAVP" if srtp else "RTP/AVP", crypto, name)


def build_answer(offer: str, host: str, port: int, name: str = "ivagate") -> str:
    """Mirror the offer's profile; answer SDES with our own key for the first offered suite."""
    parsed = Sdp.parse(offer)
    crypto = None
    if parsed.profile == "RTP/SAVP" and parsed.crypto:
        tag, suite, *_ = [*parsed.crypto[0].split(), "", ""]
        crypto = f"{tag} {suite} {_inline_key()}"
    return _session(host, port, parsed.profile or "RTP/AVP", crypto, name)


def answer_problems(offer: str, answer: str) -> list[str]:
    """What is wrong with ``answer`` for ``offer`` (empty when nothing is)."""
    if not answer.strip():
        return ["the 200 OK carries no SDP"]
    off, ans = Sdp.parse(offer), Sdp.parse(answer)
    problems = []
    if not ans.media.startswith("audio "):
        problems.append(f"no audio m= line (got {ans.media!r})")
    elif ans.port <= 0:
        problems.append(f"audio stream rejected or unparsable port in {ans.media!r}")
    if not ans.connection:
        problems.append("no c= line")
    if ans.profile != off.profile:
        problems.append(f"profile {ans.profile!r} does not match the offered {off.profile!r}")
    if off.crypto:
        offered = {c.split()[1] for c in off.crypto if len(c.split()) > 2}
        answered = [c.split() for c in ans.crypto]
        if not any(len(c) > 2 and c[1] in offered and c[2].startswith("inline:") for c in answered):
            problems.append(f"no a=crypto line answering the offered {sorted(offered)}")
    return problems
