"""Typed Event Socket events: what ``ivagate.esl`` hands to the controller.

FreeSWITCH sends ``text/event-plain`` frames whose body is ``Name: value`` lines with
URL-encoded values (see the recordings in ``shared/fixtures``). An event keeps that header
block as received (``text``); ``parse_event`` picks out only the few fields the controller
acts on, and the full ``headers`` mapping is built the first time someone asks for it. A
CHANNEL_HANGUP_COMPLETE carries some 250 headers, so parsing them all for every event was
most of the controller's CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import unquote

__all__ = [
    "EVENTS_WITHOUT_BODY",
    "SUBSCRIBED_EVENTS",
    "BackgroundJob",
    "ChannelAnswer",
    "ChannelExecuteComplete",
    "ChannelHangupComplete",
    "ChannelPark",
    "Dtmf",
    "EslEvent",
    "find_header",
    "header_value",
    "headers_named",
    "parse_event",
    "parse_plain_headers",
    "variables_start",
]

# The events the controller acts on; the subscription command is built from this tuple.
# CHANNEL_ANSWER for what FreeSWITCH's answer negotiated (SRTP), which no other event tells
# at that moment: one more 7 KB frame a call. It comes before the uuid_answer job's
# BACKGROUND_JOB (recorded), so a bot sees it once answer() returns.
SUBSCRIBED_EVENTS = (
    "CHANNEL_PARK",
    "CHANNEL_ANSWER",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "DTMF",
)
# Of those, the ones FreeSWITCH sends without a body (as recorded): all their text is headers.
EVENTS_WITHOUT_BODY = frozenset(
    {
        "CHANNEL_PARK",
        "CHANNEL_ANSWER",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HANGUP_COMPLETE",
        "DTMF",
    }
)


# Plain dataclasses, not pydantic models: every value is a str that parse_event extracted,
# so validation had nothing to check, and building a model cost more than parsing the event.
@dataclass(frozen=True, kw_only=True, eq=False)
class EslEvent:
    """Any event: its name, channel UUID (if any) and header block as FreeSWITCH sent it."""

    name: str
    uuid: str | None = None
    text: str
    body: str = ""

    @cached_property
    def headers(self) -> dict[str, str]:
        """Every header, values left URL-encoded as sent."""
        return parse_plain_headers(self.text)

    def get(self, name: str, default: str = "") -> str:
        """Header ``name`` URL-decoded, or ``default`` when absent or empty."""
        return header_value(self.text, name) or default

    def variable(self, name: str) -> str:
        """Channel variable ``name`` (``variable_<name>``) decoded; ``""`` when unset."""
        return self.get(f"variable_{name}")


@dataclass(frozen=True, kw_only=True, eq=False)
class ChannelPark(EslEvent):
    """The dialplan parked a call for the controller: the call starts here."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ChannelAnswer(EslEvent):
    """FreeSWITCH answered the call. ``srtp``: its answer negotiated SRTP (recorded: the
    answer's ``rtp_secure_media_negotiated`` names the crypto suite, and is absent from a
    plain RTP/AVP call's events)."""

    srtp: bool


@dataclass(frozen=True, kw_only=True, eq=False)
class ChannelExecuteComplete(EslEvent):
    """A dialplan application finished; ``application_uuid`` echoes our ``Event-UUID``.

    ``hangup_cause`` is set when the channel's end cut the application short (recorded:
    the caller's BYE during a playback).
    """

    application: str
    application_uuid: str
    application_response: str
    hangup_cause: str


@dataclass(frozen=True, kw_only=True, eq=False)
class ChannelHangupComplete(EslEvent):
    """The channel is gone. ``disposition``: ``recv_bye`` (far end hung up), ``send_bye`` ..."""

    hangup_cause: str
    disposition: str


@dataclass(frozen=True, kw_only=True, eq=False)
class BackgroundJob(EslEvent):
    """Result of a ``bgapi`` command; ``job_uuid`` echoes our ``Job-UUID``."""

    job_uuid: str


@dataclass(frozen=True, kw_only=True, eq=False)
class Dtmf(EslEvent):
    """A DTMF digit from the caller."""

    digit: str


def parse_plain_headers(text: str) -> dict[str, str]:
    """``Name: value`` lines to a dict, values left URL-encoded as sent."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            headers[name] = value
    return headers


def _next_line(text: str, prefix: str, begin: int = 0) -> int:
    """Where the first line from ``begin`` on (a line's start or the newline before it)
    that starts with ``prefix`` starts, or -1."""
    if text.startswith(prefix, begin):
        return begin
    at = text.find(f"\n{prefix}", begin)
    return at if at < 0 else at + 1


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return end if end >= 0 else len(text)


def find_header(text: str, name: str, start: int = 0, *, from_end: bool = False) -> str | None:
    """One header of a header block as sent, still URL-encoded; ``None`` if absent.
    ``start``: where to search from, a line's start or the newline before it;
    ``from_end``: search backwards, for a header FreeSWITCH sends among the last ones.

    ``str.find``, not a regular expression: a multi-line pattern is tried at every position
    of a header block that runs to 10 KB, and each call's events are searched some thirty
    times (control/README.md, Benchmark: "Header look-ups").
    """
    prefix = f"{name}: "
    if from_end and (last := text.rfind(f"\n{prefix}", start)) >= 0:
        at = last + 1
    else:
        at = _next_line(text, prefix, start)
    if at < 0:
        return None
    at += len(prefix)
    return text[at : _line_end(text, at)]


def variables_start(text: str) -> int:
    """Where a channel event's ``variable_*`` headers begin (FreeSWITCH sends them after
    the event's and the channel's own): a place to search them from. 0 if there are none."""
    return max(text.find("\nvariable_"), 0)


def header_value(text: str, name: str, start: int = 0, *, from_end: bool = False) -> str:
    """One header of a header block, URL-decoded (``""`` if absent), without parsing the rest
    (``start`` and ``from_end`` as for ``find_header``)."""
    raw = find_header(text, name, start, from_end=from_end)
    if raw is None:
        return ""
    return unquote(raw) if "%" in raw else raw


def headers_named(text: str, prefix: str) -> Iterator[tuple[str, str]]:
    """(name less ``prefix``, value as sent) of every header whose name starts with ``prefix``."""
    at = _next_line(text, prefix)
    while at >= 0:
        end = _line_end(text, at)
        name, sep, value = text[at + len(prefix) : end].partition(": ")
        if sep:
            yield name, value
        at = _next_line(text, prefix, end)


def parse_event(text: str, body: str = "", name: str | None = None) -> EslEvent:
    """The typed event for one ``text/event-plain`` frame: its header block and body
    (``name``: its Event-Name, when the caller has read it already)."""

    def field(name: str, *, from_end: bool = False) -> str:
        return header_value(text, name, from_end=from_end)

    if name is None:
        name = field("Event-Name")
    common: dict[str, Any] = {
        "name": name,
        "uuid": field("Unique-ID") or None,
        "text": text,
        "body": body,
    }
    match name:
        case "CHANNEL_PARK":
            return ChannelPark(**common)
        case "CHANNEL_ANSWER":
            # set when the answer is made: among the event's last headers
            negotiated = find_header(text, "variable_rtp_secure_media_negotiated", from_end=True)
            return ChannelAnswer(**common, srtp=negotiated is not None)
        case "CHANNEL_EXECUTE_COMPLETE":
            return ChannelExecuteComplete(
                **common,
                # sent after the channel's variables: the last headers of the event
                application=field("Application", from_end=True),
                application_uuid=field("Application-UUID", from_end=True),
                application_response=field("Application-Response", from_end=True),
                hangup_cause=field("Hangup-Cause"),
            )
        case "CHANNEL_HANGUP_COMPLETE":
            return ChannelHangupComplete(
                **common,
                hangup_cause=field("Hangup-Cause"),
                disposition=field("variable_sip_hangup_disposition", from_end=True),
            )
        case "BACKGROUND_JOB":
            return BackgroundJob(**common, job_uuid=field("Job-UUID"))
        case "DTMF":
            return Dtmf(**common, digit=field("DTMF-Digit"))
    return EslEvent(**common)
