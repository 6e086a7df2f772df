"""Live call audio: the bot hears the caller and speaks back (``Call.open_stream``).
The bot's side is ``stream``; ``endpoint`` (the controller's) carries it over FreeSWITCH."""

from .stream import AudioError, AudioFrame, AudioStream, StreamClosed

__all__ = ["AudioError", "AudioFrame", "AudioStream", "StreamClosed"]
