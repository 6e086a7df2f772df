"""Typed Event Socket events: what ``ivagate.esl`` hands to the controller.

FreeSWITCH sends ``text/event-plain`` frames whose body is ``Name: value`` lines with
URL-encoded values (see the recordings in ``shared/fixtures``). ``parse_event`` keeps the
header values exactly as received in ``headers`` and decodes only the fields the controller
reads, so the INVITE header variables can still be shown to bots raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict

__all__ = [
    "SUBSCRIBED_EVENTS",
    "BackgroundJob",
    "ChannelAnswer",
    "ChannelExecuteComplete",
    "ChannelHangupComplete",
    "ChannelPark",
    "Dtmf",
    "EslEvent",
    "parse_event",
    "parse_plain_headers",
]

# The events the controller acts on; the subscription command is built from this tuple.
SUBSCRIBED_EVENTS = (
    "CHANNEL_PARK",
    "CHANNEL_ANSWER",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_HANGUP_COMPLETE",
    "BACKGROUND_JOB",
    "DTMF",
)


class EslEvent(BaseModel):
    """Any event: its name, channel UUID (if any) and headers as FreeSWITCH sent them."""

    model_config = ConfigDict(frozen=True)

    name: str
    uuid: str | None = None
    headers: Mapping[str, str]
    body: str = ""

    def get(self, name: str, default: str = "") -> str:
        """Header ``name`` URL-decoded, or ``default``."""
        value = self.headers.get(name)
        return default if value is None else unquote(value)

    def variable(self, name: str) -> str:
        """Channel variable ``name`` (``variable_<name>``) decoded; ``""`` when unset."""
        return self.get(f"variable_{name}")


class ChannelPark(EslEvent):
    """The dialplan parked a call for the controller: the call starts here."""


class ChannelAnswer(EslEvent):
    """FreeSWITCH answered the call (200 OK sent)."""


class ChannelExecuteComplete(EslEvent):
    """A dialplan application finished; ``application_uuid`` echoes our ``Event-UUID``."""

    application: str
    application_uuid: str
    application_response: str


class ChannelHangupComplete(EslEvent):
    """The channel is gone. ``disposition``: ``recv_bye`` (far end hung up), ``send_bye`` ..."""

    hangup_cause: str
    disposition: str


class BackgroundJob(EslEvent):
    """Result of a ``bgapi`` command; ``job_uuid`` echoes our ``Job-UUID``."""

    job_uuid: str


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


def parse_event(headers: Mapping[str, str], body: str = "") -> EslEvent:
    """Build the typed event for one ``text/event-plain`` frame's headers and body."""
    name = headers.get("Event-Name", "")
    uuid = headers.get("Unique-ID")

    def field(header: str) -> str:
        return unquote(headers.get(header, ""))

    match name:
        case "CHANNEL_PARK":
            return ChannelPark(name=name, uuid=uuid, headers=headers, body=body)
        case "CHANNEL_ANSWER":
            return ChannelAnswer(name=name, uuid=uuid, headers=headers, body=body)
        case "CHANNEL_EXECUTE_COMPLETE":
            return ChannelExecuteComplete(
                name=name,
                uuid=uuid,
                headers=headers,
                body=body,
                application=field("Application"),
                application_uuid=field("Application-UUID"),
                application_response=field("Application-Response"),
            )
        case "CHANNEL_HANGUP_COMPLETE":
            return ChannelHangupComplete(
                name=name,
                uuid=uuid,
                headers=headers,
                body=body,
                hangup_cause=field("Hangup-Cause"),
                disposition=field("variable_sip_hangup_disposition"),
            )
        case "BACKGROUND_JOB":
            return BackgroundJob(
                name=name, uuid=uuid, headers=headers, body=body, job_uuid=field("Job-UUID")
            )
        case "DTMF":
            return Dtmf(name=name, uuid=uuid, headers=headers, body=body, digit=field("DTMF-Digit"))
    return EslEvent(name=name, uuid=uuid, headers=headers, body=body)
