"""RingCX emulator and conformance kit: place calls the way RingCX does, check the answers.

``run_call(CallPlan(...))`` places one call and returns a ``CallReport``; ``run_load`` many.
``ivagate.emulator.media_node.MediaNode`` is a stand-in media node for testing an edge.
"""

from ivagate.emulator.load import run_load
from ivagate.emulator.plan import CallPlan
from ivagate.emulator.report import CallReport, Check, ReceivedInfo
from ivagate.emulator.uac import run_call

__all__ = ["CallPlan", "CallReport", "Check", "ReceivedInfo", "run_call", "run_load"]
