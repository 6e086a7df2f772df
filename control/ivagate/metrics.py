"""Prometheus metrics of one controller, served by ``GET /metrics``.

They live in their own registry so that several controllers in one process (tests,
benchmarks) do not collide with the client library's global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .bots.base import Outcome

__all__ = [
    "ACTIVE_CALLS",
    "CALLS_ENDED",
    "CALLS_ENDED_BY_OUTCOME",
    "ESL_CONNECTED",
    "INFO_FAILED",
    "INFO_HANDOFF_SECONDS",
    "INFO_SENT",
    "READY",
    "REGISTRY",
]

REGISTRY = CollectorRegistry(auto_describe=True)

CALLS_ENDED = Counter(
    "ivagate_calls_total",
    "Calls ended, by outcome (Success, Failed, Disconnected)",
    ["outcome"],
    registry=REGISTRY,
)
# each outcome's series exists from the start (at 0), and no label lookup per call
CALLS_ENDED_BY_OUTCOME = {outcome: CALLS_ENDED.labels(outcome=outcome.value) for outcome in Outcome}
ACTIVE_CALLS = Gauge("ivagate_active_calls", "Calls taken and not yet ended", registry=REGISTRY)
INFO_SENT = Counter(
    "ivagate_info_sent_total", "INFO bodies FreeSWITCH accepted for sending", registry=REGISTRY
)
INFO_FAILED = Counter(
    "ivagate_info_failed_total", "INFO bodies not sent, by reason", ["reason"], registry=REGISTRY
)
INFO_HANDOFF_SECONDS = Histogram(
    "ivagate_info_handoff_seconds",
    "From send_update()/finish() to FreeSWITCH's reply to uuid_send_info",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
ESL_CONNECTED = Gauge(
    "ivagate_esl_connected", "1 while the Event Socket connection is up", registry=REGISTRY
)
READY = Gauge(
    "ivagate_ready", "1 while this node takes new calls (ivagate_ready=true)", registry=REGISTRY
)
