"""RingCX emulator and conformance kit: place calls the way RingCX does, check the answers.

``run_call(CallPlan(...))`` places one call and returns a ``CallReport`` (its ``media``: what
the caller sent and heard); ``run_load`` many.
``ivagate_kit.media_node.MediaNode`` is a stand-in media node for testing an edge;
``ivagate_kit.esl_double.EslDouble`` plays FreeSWITCH's event socket for testing a controller.
"""

from ivagate_kit.load import run_load
from ivagate_kit.plan import CallPlan
from ivagate_kit.report import CallReport, Check, Frame, MediaReport, ReceivedInfo
from ivagate_kit.uac import run_call

__all__ = [
    "CallPlan",
    "CallReport",
    "Check",
    "Frame",
    "MediaReport",
    "ReceivedInfo",
    "run_call",
    "run_load",
]
