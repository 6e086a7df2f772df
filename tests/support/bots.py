"""Bots used by the controller tests, loaded by ``module:Class`` like a site's own bots."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from ivagate.bots.base import Bot, Call, CallEnded, Outcome, PayloadError

__all__ = [
    "Broken",
    "BrokenInit",
    "Collect",
    "Daydream",
    "FinishOnly",
    "LongPlay",
    "Payloads",
    "Silent",
    "Slow",
    "TwoUpdates",
    "UpdateAfterHangup",
]


class Recording(Bot):
    """Keeps what happened to it on the class, for the test to read."""

    seen: ClassVar[list[Any]] = []

    async def on_hangup(self, call: Call, outcome: Outcome) -> None:
        type(self).seen.append(("hangup", outcome))

    async def on_dtmf(self, call: Call, digit: str) -> None:
        type(self).seen.append(("dtmf", digit))


class TwoUpdates(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        await call.send_update({"n": 1})
        await call.send_update({"n": 2, "text": 'it\'s a "quoted" test \\ with backslash'})
        await call.finish({"intent": "Sales"})


class LongPlay(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        try:
            await call.play("tone_stream://%(5000,0,440)")
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise


class UpdateAfterHangup(Recording):
    seen: ClassVar[list[Any]] = []
    hung_up: ClassVar[asyncio.Event]

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        type(self).seen.append(("answered", call.uuid))
        await type(self).hung_up.wait()
        try:
            await call.send_update({"late": True})
        except CallEnded as exc:
            type(self).seen.append(("CallEnded", str(exc)))


class Broken(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        raise RuntimeError("bot bug")


class BrokenInit(Recording):
    def __init__(self, options: Mapping[str, Any]) -> None:
        raise ValueError("bad bot options")


class Payloads(Recording):
    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        for bad in (
            {"x": object()},
            {"final": True},
            {"blob": "x" * 100_000},
            ["not", "a", "dict"],
        ):
            try:
                await call.send_update(bad)  # type: ignore[arg-type]
            except PayloadError as exc:
                type(self).seen.append(str(exc))
        await call.finish({"intent": "Done"})


class Daydream(Recording):
    """Answers, then waits on something of its own, not on the call."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            type(self).seen.append("cancelled")
            raise


class Silent(Recording):
    """Answers and returns without a final intent."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()


class FinishOnly(Recording):
    """Answers and sends the final intent at once."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        try:
            await call.finish({"intent": "Sales"})
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise


class Collect(Recording):
    """Collects one digit, sends it as the final intent."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        digit = await call.collect_digits(1, timeout=2)
        await call.finish({"digit": digit})


class Slow(Recording):
    """Answers only after ``options["delay"]`` seconds (default 3): past a short deadline."""

    seen: ClassVar[list[Any]] = []

    async def on_call_start(self, call: Call) -> None:
        await asyncio.sleep(float(self.options.get("delay", 3)))
        try:
            await call.answer()
        except CallEnded:
            type(self).seen.append("CallEnded")
            raise
        await call.finish({"intent": "Late"})
