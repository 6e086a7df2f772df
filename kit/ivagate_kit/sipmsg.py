"""SIP messages (RFC 3261 section 7): parse, build, and read the header values a dialog needs.

Only what a RingCX-like caller and a stand-in media node use: start line, headers kept in
order with case-insensitive lookup (compact forms expanded), a text body whose
Content-Length is counted in bytes, name-addr / URI / Via parsing, and response building.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "REASONS",
    "Headers",
    "NameAddr",
    "SipError",
    "SipMessage",
    "SipUri",
    "Via",
    "new_branch",
    "new_tag",
    "split_list",
]

BRANCH_COOKIE = "z9hG4bK"

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
# Headers whose comma-separated values are separate entries (RFC 3261 7.3.1); split on parse
# so a route set or Via stack reads the same whichever way the sender folded it.
LIST_HEADERS = frozenset({"via", "route", "record-route", "contact"})

REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    415: "Unsupported Media Type",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    603: "Decline",
}


class SipError(ValueError):
    """Bytes that are not a SIP message (the text says what is wrong)."""


def new_branch() -> str:
    """A Via branch carrying the RFC 3261 magic cookie."""
    return BRANCH_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def split_list(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or <...>)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _params(text: str) -> dict[str, str]:
    """``;a=1;lr`` -> {"a": "1", "lr": ""} (names lower-cased)."""
    out: dict[str, str] = {}
    for raw in text.split(";"):
        item = raw.strip()
        if item:
            name, _, val = item.partition("=")
            out[name.strip().lower()] = val.strip()
    return out


def _format_params(params: Mapping[str, str]) -> str:
    return "".join(f";{k}={v}" if v else f";{k}" for k, v in params.items())


class Headers(Mapping[str, str]):
    """Ordered SIP headers; ``h["via"]`` is the first value, ``h.get_all("Via")`` every one."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((COMPACT.get(name.lower(), name), value))

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def items_in_order(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return values[0]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len({n.lower() for n, _ in self._items})

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class SipUri:
    """``sip:user@host:port;params`` (URI headers after ``?`` are kept verbatim in ``rest``)."""

    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)
    rest: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = re.fullmatch(
            r"(?P<scheme>sips?):(?:(?P<user>[^@;?]*)@)?(?P<host>\[[^\]]+\]|[^:;?]+)"
            r"(?::(?P<port>\d+))?(?P<params>;[^?]*)?(?P<rest>\?.*)?",
            text.strip(),
            re.IGNORECASE,
        )
        if not m:
            raise SipError(f"not a SIP URI: {text!r}")
        return cls(
            scheme=m["scheme"].lower(),
            user=m["user"] or "",
            host=m["host"],
            port=int(m["port"]) if m["port"] else None,
            params=_params(m["params"] or ""),
            rest=m["rest"] or "",
        )

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}:{user}{self.host}{port}{_format_params(self.params)}{self.rest}"

    def address(self, transport: str) -> tuple[str, int]:
        """Where to send: host and port, the port defaulting per RFC 3263 for the transport."""
        default = 5061 if self.scheme == "sips" or transport == "tls" else 5060
        return self.host.strip("[]"), self.port or default


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters."""

    uri: str
    display: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri, sep, params = rest.partition(">")
            if not sep:
                raise SipError(f"unclosed '<' in {text!r}")
            return cls(uri.strip(), display.strip().strip('"'), _params(params))
        uri, _, params = text.partition(";")
        return cls(uri.strip(), "", _params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


@dataclass
class Via:
    """One Via entry: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = re.fullmatch(
            r"SIP\s*/\s*2\.0\s*/\s*(?P<t>\w+)\s+(?P<host>\[[^\]]+\]|[^:;\s]+)"
            r"(?::(?P<port>\d+))?\s*(?P<params>;.*)?",
            text.strip(),
            re.IGNORECASE,
        )
        if not m:
            raise SipError(f"not a Via value: {text!r}")
        return cls(
            m["t"].upper(),
            m["host"],
            int(m["port"]) if m["port"] else None,
            _params(m["params"] or ""),
        )

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set); ``body`` is text."""

    headers: Headers = field(default_factory=Headers)
    body: str = ""
    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""

    @classmethod
    def request(
        cls, method: str, uri: str, headers: list[tuple[str, str]], body: str = ""
    ) -> SipMessage:
        return cls(Headers(headers), body, method=method, uri=uri)

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID", "")

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = self.required("CSeq").strip().partition(" ")
        if not num.isdigit():
            raise SipError(f"bad CSeq: {self.headers.get('CSeq')!r}")
        return int(num), method.strip().upper()

    def required(self, name: str) -> str:
        """The first value of a header the message cannot do without (SipError if absent)."""
        value = self.headers.get(name)
        if value is None:
            raise SipError(f"no {name} header")
        return value

    @property
    def top_via(self) -> Via:
        return Via.parse(self.required("Via"))

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.required("From"))

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.required("To"))

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").strip()

    def summary(self) -> str:
        """One line for a timeline: ``INVITE sip:...`` or ``200 OK (INVITE)``."""
        if self.is_request:
            return f"{self.method} {self.uri}"
        try:
            method = self.cseq[1]
        except SipError:
            method = "?"
        return f"{self.status} {self.reason} ({method})"

    def encode(self) -> bytes:
        body = self.body.encode("utf-8", "surrogateescape")
        if self.is_request:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        length = f"Content-Length: {len(body)}"
        lines = [start]
        lines += [
            length if n.lower() == "content-length" else f"{n}: {v}"
            for n, v in self.headers.items_in_order()
        ]
        if "Content-Length" not in self.headers:
            lines.append(length)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        """Parse one whole message (a datagram, or one framed off a stream)."""
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = data.partition(b"\n\n")
        text = head.decode("utf-8", "surrogateescape")
        lines = text.replace("\r\n", "\n").split("\n")
        msg = cls(Headers())
        start = lines[0].strip()
        if start.startswith("SIP/2.0 "):
            _, code, *reason = start.split(" ", 2)
            if not (code.isdigit() and len(code) == 3):
                raise SipError(f"bad status line: {start!r}")
            msg.status, msg.reason = int(code), reason[0] if reason else ""
        else:
            parts = start.split(" ")
            if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
                raise SipError(f"bad request line: {start[:80]!r}")
            msg.method, msg.uri = parts[0].upper(), parts[1]
        unfolded: list[str] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and unfolded:
                unfolded[-1] += " " + line.strip()
            elif line:
                unfolded.append(line)
        for line in unfolded:
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise SipError(f"bad header line: {line[:80]!r}")
            name, value = name.strip(), value.strip()
            full = COMPACT.get(name.lower(), name)
            if full.lower() in LIST_HEADERS and value != "*":
                for item in split_list(value):
                    msg.headers.add(full, item)
            else:
                msg.headers.add(full, value)
        length = msg.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise SipError(f"bad Content-Length: {length!r}")
            body = body[: int(length)]
        msg.body = body.decode("utf-8", "surrogateescape")
        return msg

    def response(
        self, status: int, reason: str = "", *, to_tag: str | None = None, body: str = ""
    ) -> SipMessage:
        """A response to this request (RFC 3261 8.2.6.2): Via, From, To, Call-ID, CSeq copied.

        Record-Route is copied into responses that can set up a dialog (12.1.1).
        """
        headers = Headers([("Via", v) for v in self.headers.get_all("Via")])
        to = self.headers.get("To", "")
        if to_tag and ";tag=" not in to.replace(" ", "").lower():
            to = f"{to};tag={to_tag}"
        headers.add("From", self.headers.get("From", ""))
        headers.add("To", to)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", self.headers.get("CSeq", ""))
        if self.method == "INVITE" and 100 < status < 300:
            for rr in self.headers.get_all("Record-Route"):
                headers.add("Record-Route", rr)
        return SipMessage(headers, body, status=status, reason=reason or REASONS.get(status, ""))
