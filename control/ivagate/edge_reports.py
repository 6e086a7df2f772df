"""Reports from the edges: how RingCX answered each INFO this node sent (issue 15).

FreeSWITCH never tells the controller the SIP response to an INFO (mod_sofia drops it); the
edge sees it. For each INFO from this node the edge writes one line to ``edge.listen``
over TCP (kamailio.cfg, route[INFO_REPORT]): ``<token> info <end> <status> <sent> <ended>
<cseq> <call-id> <reason>``. Connections are taken only from ``edge.edges`` and lines only
with ``edge.token``; each report (``EdgeReport``) goes to its call, found by SIP Call-ID.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from .calls.records import EdgeReport
from .calls.registry import CallRegistry
from .metrics import Metrics
from .settings import EdgeSettings

__all__ = ["EdgeReports"]

log = logging.getLogger(__name__)


class EdgeReports:
    """The listener for the edges' INFO reports; ``start()`` / ``close()``."""

    def __init__(self, settings: EdgeSettings, calls: CallRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.calls = calls
        self.metrics = metrics
        token = settings.token.get_secret_value() if settings.token else ""
        self._token = token.encode()
        self._server: asyncio.Server | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.listen is not None

    async def start(self) -> None:
        if self.settings.listen is None:
            return
        host, _, port = self.settings.listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]"), int(port))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def deliver(self, report: EdgeReport) -> None:
        """Hand a report to its call (a call this node no longer knows is ignored)."""
        call = self.calls.get(report.call_id)
        if call is not None:
            call.info_reported(report)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        if peer not in self.settings.edges:
            log.warning("edge reports: connection from %s, not an edge (edge.edges)", peer)
            writer.close()
            return
        self.metrics.edge_reports_connected.inc()
        try:
            while line := await reader.readline():
                token, _, report = line.decode().rstrip("\r\n").partition(" ")
                # constant time: the token must not leak through timing
                if not hmac.compare_digest(token.encode(), self._token):
                    log.warning("edge reports: wrong token from %s; closing", peer)
                    return
                self.deliver(EdgeReport.parse(report))
        except (ValueError, ConnectionError) as exc:
            log.warning("edge reports from %s: %s; closing", peer, exc)
        finally:
            self.metrics.edge_reports_connected.dec()
            writer.close()
