"""Which bot takes a call, decided before it is answered: header, then DID, then default.

RingCX selects bots by the Request-URI user (DID) and may select them by a SIP header whose
name it has not fixed yet ("header name TBD"), so the header is a setting. A header that names
a bot this controller does not have is a routing error (404), not a reason to fall back.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from .invite import Invite
from .settings import RoutingSettings

__all__ = ["Route", "choose_bot"]


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen bot (``None``: reject with 404) and why, for the call's log line."""

    bot: str | None
    reason: str


def choose_bot(invite: Invite, settings: RoutingSettings, bots: Container[str]) -> Route:
    if settings.bot_header:
        named = invite.header(settings.bot_header)
        if named is not None:
            if named in bots:
                return Route(named, f"header {settings.bot_header}")
            return Route(None, f"header {settings.bot_header} names unknown bot {named!r}")
    by_did = settings.dids.get(invite.did)
    if by_did is not None:
        return Route(by_did, f"DID {invite.did}")
    if settings.default_bot:
        return Route(settings.default_bot, "default bot")
    return Route(None, f"no bot for DID {invite.did!r} and no default bot")
