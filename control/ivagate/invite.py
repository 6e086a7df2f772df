"""What a bot sees of the INVITE, decoded from the CHANNEL_PARK event.

The media profile sets ``parse-all-invite-headers``: FreeSWITCH then stores every INVITE
header as a channel variable ``sip_i_<name>`` (lower case, ``-`` as ``_``), URL-encoded in
plain events, and a header that occurs more than once as ``ARRAY::first|:second`` (mod_sofia
``sofia_parse_all_invite_headers``). X- headers are also ``sip_h_<Name>`` with their case kept,
which gives back their spelling. The edge adds ``X-Edge-Transport`` and ``X-Edge-Source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ConfigDict

from .events import ChannelPark

__all__ = ["Invite", "decode_invite_headers"]

_SIP_I = "variable_sip_i_"
_SIP_H = "variable_sip_h_"
_ARRAY = "ARRAY::"


class Invite(BaseModel):
    """The call as it arrived: identities, transport and every header."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    uuid: str
    sip_call_id: str
    did: str
    caller: str
    transport: str
    source: str
    srtp: bool
    headers: CIMultiDictProxy[str]
    raw_headers: dict[str, str]

    @classmethod
    def from_park(cls, event: ChannelPark) -> Invite:
        headers, raw = decode_invite_headers(event.headers)
        offer = event.variable("switch_r_sdp")
        via = f"{event.variable('sip_network_ip')}:{event.variable('sip_network_port')}"
        return cls(
            uuid=event.uuid or "",
            sip_call_id=event.variable("sip_call_id"),
            did=event.variable("sip_req_user"),
            caller=event.get("Caller-Caller-ID-Number"),
            # without the edge (a caller straight to FreeSWITCH) the last hop is all we know
            transport=headers.get("X-Edge-Transport", event.variable("sip_via_protocol")),
            source=headers.get("X-Edge-Source", via),
            # FreeSWITCH answers an RTP/SAVP offer with RTP/SAVP (see the fixtures README)
            srtp="RTP/SAVP" in offer,
            headers=headers,
            raw_headers=raw,
        )


def decode_invite_headers(
    variables: Mapping[str, str],
) -> tuple[CIMultiDictProxy[str], dict[str, str]]:
    """``sip_i_*`` variables to (decoded case-insensitive multi-dict, raw name -> raw value)."""
    items = list(variables.items())
    spelling = {
        name[len(_SIP_H) :].lower(): name[len(_SIP_H) :]
        for name, _ in items
        if name.startswith(_SIP_H)
    }
    headers: CIMultiDict[str] = CIMultiDict()
    raw: dict[str, str] = {}
    for name, value in items:
        if not name.startswith(_SIP_I):
            continue
        key = name[len("variable_") :]
        raw[key] = value
        header = name[len(_SIP_I) :].replace("_", "-")
        header = spelling.get(header, header)
        decoded = unquote(value)
        values = decoded[len(_ARRAY) :].split("|:") if decoded.startswith(_ARRAY) else [decoded]
        for one in values:
            headers.add(header, one)
    return CIMultiDictProxy(headers), raw
