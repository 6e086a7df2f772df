"""What a bot sees of the INVITE, decoded from the CHANNEL_PARK event.

The media profile sets ``parse-all-invite-headers``: FreeSWITCH then stores every INVITE
header as a channel variable ``sip_i_<name>`` (lower case, ``-`` as ``_``), URL-encoded in
plain events, and a header that occurs more than once as ``ARRAY::first|:second`` (mod_sofia
``sofia_parse_all_invite_headers``). X- headers are also ``sip_h_<Name>`` with their case kept,
which gives back their spelling. The edge adds ``X-Edge-Transport`` and ``X-Edge-Source``.
"""

from __future__ import annotations

from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ConfigDict

from .events import ChannelPark, header_raw, header_value, headers_named

__all__ = ["CallIdentity", "Invite", "decode_invite_headers"]

_ARRAY = "ARRAY::"


class CallIdentity(BaseModel):
    """Who called whom, and how: what the call record keeps of the INVITE."""

    uuid: str
    sip_call_id: str
    did: str
    caller: str
    transport: str
    source: str
    srtp: bool


class Invite(CallIdentity):
    """The call as it arrived: identities, transport and every header."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    headers: CIMultiDictProxy[str]
    raw_headers: dict[str, str]

    @classmethod
    def from_park(cls, event: ChannelPark) -> Invite:
        text = event.text
        headers, raw = decode_invite_headers(text)
        via = f"{header_value(text, 'variable_sip_network_ip')}:"
        via += header_value(text, "variable_sip_network_port")
        # model_construct: every field is built here from FreeSWITCH's event
        return cls.model_construct(
            uuid=event.uuid or "",
            sip_call_id=header_value(text, "variable_sip_call_id"),
            did=header_value(text, "variable_sip_req_user"),
            caller=header_value(text, "Caller-Caller-ID-Number"),
            # without the edge (a caller straight to FreeSWITCH) the last hop is all we know
            transport=headers.get(
                "X-Edge-Transport", header_value(text, "variable_sip_via_protocol")
            ),
            source=headers.get("X-Edge-Source", via),
            # FreeSWITCH answers an RTP/SAVP offer with RTP/SAVP (see the fixtures README);
            # its URL encoding leaves letters and "/" alone, so the SDP need not be decoded
            srtp="RTP/SAVP" in header_raw(text, "variable_switch_r_sdp"),
            headers=headers,
            raw_headers=raw,
        )


def decode_invite_headers(text: str) -> tuple[CIMultiDictProxy[str], dict[str, str]]:
    """An event's ``sip_i_*`` variables to (decoded case-insensitive multi-dict, raw values).

    ``text`` is the event's header block; only the header variables are picked out of it.
    """
    spelling = {name.lower(): name for name, _ in headers_named(text, "variable_sip_h_")}
    headers: CIMultiDict[str] = CIMultiDict()
    raw: dict[str, str] = {}
    for name, value in headers_named(text, "variable_sip_i_"):
        raw[f"sip_i_{name}"] = value
        header = name.replace("_", "-")
        header = spelling.get(header, header)
        decoded = unquote(value)
        values = decoded[len(_ARRAY) :].split("|:") if decoded.startswith(_ARRAY) else [decoded]
        for one in values:
            headers.add(header, one)
    return CIMultiDictProxy(headers), raw
