"""What a bot sees of the INVITE, decoded from the CHANNEL_PARK event.

The media profile sets ``parse-all-invite-headers``: FreeSWITCH then stores every INVITE
header as a channel variable ``sip_i_<name>`` (lower case, ``-`` as ``_``), URL-encoded in
plain events, and a header that occurs more than once as ``ARRAY::first|:second`` (mod_sofia
``sofia_parse_all_invite_headers``). X- headers are also ``sip_h_<Name>`` with their case kept,
which gives back their spelling. The edge adds ``X-Edge-Transport`` and ``X-Edge-Source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy

from .events import (
    ChannelPark,
    find_header,
    header_value,
    headers_named,
    variables_start,
)

__all__ = [
    "CallIdentity",
    "Invite",
    "decode_invite_headers",
    "invite_header",
    "raw_invite_headers",
]

_ARRAY = "ARRAY::"


# Plain dataclasses: built once per call from values this module extracted, and read on
# every call's path; the API serialises the record (``CallRecord.as_json``).
@dataclass(kw_only=True, slots=True)
class CallIdentity:
    """Who called whom, and how: what the call record keeps of the INVITE."""

    uuid: str
    sip_call_id: str
    did: str
    caller: str
    transport: str
    source: str


@dataclass(kw_only=True)
class Invite(CallIdentity):
    """The call as it arrived: identities, transport and every header.

    The headers are decoded from the CHANNEL_PARK event when first asked for: routing and
    the edge's two headers read single headers (``header()``), so a bot that reads none
    does not pay for decoding them all.
    """

    park_text: str  # the CHANNEL_PARK event's header block
    variables_at: int = 0  # where its variables begin: headers are searched from there

    @cached_property
    def headers(self) -> CIMultiDictProxy[str]:
        return decode_invite_headers(self.park_text)

    @cached_property
    def raw_headers(self) -> dict[str, str]:
        return raw_invite_headers(self.park_text)

    def header(self, name: str) -> str | None:
        """The (first) value of header ``name``, any case, decoded; ``None`` when absent."""
        return invite_header(self.park_text, name, self.variables_at)

    def variable(self, name: str) -> str:
        """Channel variable ``name`` as the CHANNEL_PARK event carried it, decoded (``""``
        when unset)."""
        return header_value(self.park_text, f"variable_{name}", self.variables_at)

    @classmethod
    def from_park(cls, event: ChannelPark) -> Invite:
        text = event.text
        at = variables_start(text)
        transport = invite_header(text, "X-Edge-Transport", at)
        source = invite_header(text, "X-Edge-Source", at)
        # without the edge (a caller straight to FreeSWITCH) the last hop is all we know
        if transport is None:
            transport = header_value(text, "variable_sip_via_protocol", at)
        if source is None:
            ip = header_value(text, "variable_sip_network_ip", at)
            source = f"{ip}:{header_value(text, 'variable_sip_network_port', at)}"
        return cls(
            uuid=event.uuid or "",
            sip_call_id=header_value(text, "variable_sip_call_id", at),
            did=header_value(text, "variable_sip_req_user", at),
            caller=header_value(text, "Caller-Caller-ID-Number"),
            transport=transport,
            source=source,
            park_text=text,
            variables_at=at,
        )


def _values(raw: str) -> list[str]:
    """A ``sip_i_*`` value as sent to the header's values (several in the ARRAY form)."""
    decoded = unquote(raw)
    return decoded[len(_ARRAY) :].split("|:") if decoded.startswith(_ARRAY) else [decoded]


def invite_header(text: str, name: str, start: int = 0) -> str | None:
    """Header ``name``'s first value in an event's header block, without the others
    (``start``: where to search from, e.g. ``variables_start(text)``)."""
    raw = find_header(text, f"variable_sip_i_{name.lower().replace('-', '_')}", start)
    return None if raw is None else _values(raw)[0]


def decode_invite_headers(text: str) -> CIMultiDictProxy[str]:
    """An event's ``sip_i_*`` variables to a decoded case-insensitive multi-dict.

    ``text`` is the event's header block; only the header variables are picked out of it.
    """
    spelling = {name.lower(): name for name, _ in headers_named(text, "variable_sip_h_")}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in headers_named(text, "variable_sip_i_"):
        header = name.replace("_", "-")
        header = spelling.get(header, header)
        for one in _values(value):
            headers.add(header, one)
    return CIMultiDictProxy(headers)


def raw_invite_headers(text: str) -> dict[str, str]:
    """An event's ``sip_i_*`` variables as FreeSWITCH sent them (URL-encoded)."""
    return {f"sip_i_{name}": value for name, value in headers_named(text, "variable_sip_i_")}
