"""Structured logs: one JSON object per line; call lines carry ``uuid`` and ``call_id``.

The SIP Call-ID is what Kamailio logs, so one grep follows a call across edge and controller.

Lines are written in batches (``log.flush_interval``): a busy node logs two lines per call,
and a write per line (to a file, or a pipe that wakes the container runtime) was a tenth of
the controller's CPU per call (``python -m benchmarks controller``; control/README.md,
"Benchmark", the log-batch line). WARNING and above go out at once, with every line before
them, and ``logging.shutdown()`` writes what is left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

from .settings import LogSettings

__all__ = ["BatchingHandler", "CallLogger", "JsonFormatter", "TextFormatter", "setup_logging"]

# Attributes of every LogRecord: anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    _encode = json.JSONEncoder(default=str).encode  # one encoder, not one per line

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_extra(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self._encode(line)


class TextFormatter(logging.Formatter):
    """For people at a terminal: the usual line, then the call's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _extra(record).items())
        line = super().format(record)
        return f"{line} [{fields}]" if fields else line


class BatchingHandler(logging.StreamHandler[TextIO]):
    """Writes lines in batches: a line waits at most ``interval`` seconds (flushed by the
    running event loop), a WARNING or worse goes out at once with everything before it, and
    so does every line logged outside an event loop. ``interval=0`` writes every line at once.

    A record's message is rendered when it is logged (its arguments may change later), the
    rest of its line with the batch: the end-of-call line cost 75 us formatted on its own
    between two calls' events, 30 us in a batch (control/README.md, "Benchmark").
    """

    def __init__(self, stream: TextIO, interval: float) -> None:
        super().__init__(stream)
        self.interval = interval
        self._records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
        except Exception:
            self.handleError(record)
            return
        self._records.append(record)
        if record.levelno >= logging.WARNING or self.interval <= 0:
            self.flush()
        elif len(self._records) == 1:  # the first of a batch: make sure it goes out in time
            try:
                asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:  # no event loop in this thread
                self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if self._records:
                records, self._records = self._records, []
                self.stream.write("".join(self._lines(records)))
            self.stream.flush()

    def _lines(self, records: list[logging.LogRecord]) -> Iterator[str]:
        for record in records:
            try:
                yield f"{self.format(record)}\n"
            except Exception:
                self.handleError(record)


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line names the call (FreeSWITCH UUID and SIP Call-ID)."""

    def __init__(self, logger: logging.Logger, uuid: str, call_id: str) -> None:
        super().__init__(logger, {"uuid": uuid, "call_id": call_id})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def setup_logging(settings: LogSettings) -> None:
    # Neither formatter prints the thread, process or source line of a call, so none is
    # looked up for each record (the logging HOWTO's "Optimization").
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch for the source lookup
    handler = BatchingHandler(sys.stderr, settings.flush_interval)
    handler.setFormatter(JsonFormatter() if settings.json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
