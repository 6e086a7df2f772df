"""Reports from the edges: how RingCX answered each INFO this node sent (issue 15).

FreeSWITCH never tells the controller the SIP response to an INFO (mod_sofia drops it); the
edge sees it. Each edge pushes one line per INFO from this node over its evapi listener
(kamailio.cfg, route[INFO_REPORT]): the controller connects to every edge in
``edge.reports``, from the media node's address (``edge.source``), sends ``edge.token`` as
its first netstring, then reads netstrings ``info <end> <status> <sent> <ended> <cseq>
<call-id> <reason>`` (``EdgeReport``) and hands each to its call, found by SIP Call-ID.
A connection that fails or closes is retried with backoff; meanwhile INFOs get no report
and each waits ``edge.report_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .calls.records import EdgeReport
from .calls.registry import CallRegistry
from .metrics import Metrics
from .settings import EdgeSettings

__all__ = ["EdgeReports"]

log = logging.getLogger(__name__)

RECONNECT_MIN = 0.5  # seconds before the first retry, doubled up to RECONNECT_MAX
RECONNECT_MAX = 30.0
MAX_REPORT = 4096  # bytes: a report line is a few hundred


class EdgeReports:
    """Connections to the edges' report listeners; ``start()`` / ``close()``."""

    def __init__(self, settings: EdgeSettings, calls: CallRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.calls = calls
        self.metrics = metrics
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.settings.reports)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow(edge)) for edge in self.settings.reports]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def deliver(self, report: EdgeReport) -> None:
        """Hand a report to its call (a call this node no longer knows is ignored)."""
        call = self.calls.get(report.call_id)
        if call is not None:
            call.info_reported(report)

    async def _follow(self, edge: str) -> None:
        delay = RECONNECT_MIN
        while True:
            try:
                await self._read(edge)
                delay = RECONNECT_MIN
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                log.warning("edge reports from %s: %s; retrying in %ss", edge, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _read(self, edge: str) -> None:
        host, _, port = edge.rpartition(":")
        source = None if self.settings.source is None else (self.settings.source, 0)
        reader, writer = await asyncio.open_connection(
            host.strip("[]"), int(port), local_addr=source
        )
        token = self.settings.token
        assert token is not None  # EdgeSettings requires it with reports
        writer.write(_netstring(token.get_secret_value().encode()))
        self.metrics.edge_reports_connected.inc()
        log.info("edge reports: connected to %s", edge)
        try:
            while True:
                length = await reader.readuntil(b":")
                size = int(length[:-1])
                if not 0 < size <= MAX_REPORT:
                    raise ValueError(f"report of {size} bytes")
                frame = await reader.readexactly(size + 1)
                if frame[-1:] != b",":
                    raise ValueError("netstring without its comma")
                self.deliver(EdgeReport.parse(frame[:-1].decode()))
        finally:
            self.metrics.edge_reports_connected.dec()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)
