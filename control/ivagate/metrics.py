"""Prometheus metrics of one controller, served by ``GET /metrics``.

``Metrics`` owns its own registry: each controller (several run in one process in tests and
benchmarks) counts its own calls, apart from the client library's global registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .bots.base import Outcome

__all__ = ["Metrics"]


class Metrics:
    """The controller's counters and gauges, in ``registry``."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        calls_ended = Counter(
            "ivagate_calls_total",
            "Calls ended, by outcome (Success, Failed, Disconnected)",
            ["outcome"],
            registry=registry,
        )
        # each outcome's series exists from the start (at 0), and no label lookup per call
        self.calls_ended = {o: calls_ended.labels(outcome=o.value) for o in Outcome}
        self.active_calls = Gauge(
            "ivagate_active_calls", "Calls taken and not yet ended", registry=registry
        )
        self.info_sent = Counter(
            "ivagate_info_sent_total",
            "INFO bodies FreeSWITCH accepted for sending",
            registry=registry,
        )
        self.info_failed = Counter(
            "ivagate_info_failed_total",
            "INFO bodies not sent, by reason",
            ["reason"],
            registry=registry,
        )
        self.info_handoff_seconds = Histogram(
            "ivagate_info_handoff_seconds",
            "From send_update()/finish() to FreeSWITCH's reply to uuid_send_info",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.info_answers = Counter(
            "ivagate_info_answers_total",
            "INFOs by how RingCX answered (edge reports): the SIP status, timeout (no answer at "
            "the edge), no_ack (not sent: RingCX's ACK never came), no_report",
            ["status"],
            registry=registry,
        )
        self.bot_failures = Counter(
            "ivagate_bot_failures_total",
            "Failures of a bot's own service (the websocket bot's connection, its protocol; "
            "the webhook unavailable or idle), by bot and reason; the call got the bot's fallback",
            ["bot", "reason"],
            registry=registry,
        )
        self.audio_tick_late = Histogram(
            "ivagate_audio_tick_late_seconds",
            "How late the audio pacer's 20 ms ticks ran against their schedule: the bots' "
            "audio leaves this much off its real-time pace",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
            registry=registry,
        )
        self.edge_reports_connected = Gauge(
            "ivagate_edge_reports_connected",
            "Connections from edges sending INFO reports now",
            registry=registry,
        )
        self.esl_connected = Gauge(
            "ivagate_esl_connected",
            "1 while the Event Socket connection is up",
            registry=registry,
        )
        self.ready = Gauge(
            "ivagate_ready",
            "1 while this node takes new calls (ivagate_ready=true)",
            registry=registry,
        )
