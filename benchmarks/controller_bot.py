"""The bot of ``benchmarks/controller.py``, alone in its module so that the controller
process under test imports nothing else of the benchmark."""

from __future__ import annotations

import time

from ivagate.bots.base import Bot, Call

__all__ = ["BenchBot"]


class BenchBot(Bot):
    """The flow the issue's reference figures were measured with (answer, two JSON INFOs,
    RingCX's BYE): answer, one update, the final intent. Each INFO carries the time it was
    requested (``t``, ``time.perf_counter()``: CLOCK_MONOTONIC, comparable across
    processes)."""

    name = "bench"

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        await call.send_update({"n": 1, "t": time.perf_counter()})
        await call.finish({"intent": "Bench", "t": time.perf_counter()})
