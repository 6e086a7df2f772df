"""Twilio Media Streams messages as the ``websocket`` bot writes and reads them.

To the bot (Twilio's shapes: ``sequenceNumber`` a string counting every message after
``connected`` from "1", ``streamSid`` on each): ``connected``, ``start``, ``media``, ``dtmf``,
``mark`` (the echo of a bot's mark), ``stop``, plus ``reply``, the answer to a RingCX
command. From the bot: Twilio's ``media``, ``mark``, ``clear``, plus RingCX's ``update``,
``finish`` and ``hangup``. Fields Twilio's clients add (``streamSid``) are accepted and
ignored; a message of another shape or event is a broken protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .base import HangupCause

__all__ = [
    "FORMATS",
    "BotMessage",
    "Clear",
    "Command",
    "Finish",
    "Hangup",
    "Mark",
    "Media",
    "MediaFormat",
    "Update",
    "parse",
]


@dataclass(frozen=True)
class MediaFormat:
    """A stream's audio as ``start.mediaFormat`` names it and ``open_stream`` opens it."""

    encoding: str  # ``mediaFormat.encoding``
    rate: int
    stream_encoding: str  # ``Call.open_stream``'s

    def as_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "sampleRate": self.rate, "channels": 1}


# By the value of the URL's ``ivagate_audio`` query parameter: Twilio's u-law (default), or
# 16 kHz 16-bit little-endian PCM for bots that prefer it.
FORMATS = {
    "pcmu": MediaFormat("audio/x-mulaw", 8000, "pcmu"),
    "l16-16000": MediaFormat("audio/x-l16", 16000, "l16"),
}


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Payload(_Message):
    payload: str


class Media(_Message):
    event: Literal["media"]
    media: _Payload


class _Name(_Message):
    name: str = Field(min_length=1, max_length=256)


class Mark(_Message):
    event: Literal["mark"]
    mark: _Name


class Clear(_Message):
    event: Literal["clear"]


class _Command(_Message):
    # the bot's own reference, echoed in the reply
    id: str | int | None = None


class Update(_Command):
    event: Literal["update"]
    payload: dict[str, Any]


class Finish(_Command):
    event: Literal["finish"]
    payload: dict[str, Any] = Field(default_factory=dict)


class Hangup(_Command):
    event: Literal["hangup"]
    cause: HangupCause = "NORMAL_CLEARING"


Command = Update | Finish | Hangup
BotMessage = Annotated[Media | Mark | Clear | Command, Field(discriminator="event")]
_BOT_MESSAGE: TypeAdapter[BotMessage] = TypeAdapter(BotMessage)


def parse(text: str | bytes) -> BotMessage:
    """One message from the bot; ``pydantic.ValidationError`` when it breaks the protocol."""
    return _BOT_MESSAGE.validate_json(text)
