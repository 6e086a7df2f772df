"""Live call audio: the bot hears the caller and speaks back (``Call.open_stream``)."""

from .endpoint import MediaEndpoint
from .stream import AudioError, AudioFrame, AudioStream, StreamClosed

__all__ = ["AudioError", "AudioFrame", "AudioStream", "MediaEndpoint", "StreamClosed"]
