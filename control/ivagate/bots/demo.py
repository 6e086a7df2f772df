"""The ``demo`` bot, the embedded default: one prompt, one digit, one update, one intent.

Options (``call.bot_options.demo``): ``prompt`` (a file or ``tone_stream://``), ``say`` (TTS
text spoken instead of the prompt when set), ``timeout`` (seconds to wait for the digit),
``intents`` (digit -> intent name; ``"none"`` names the intent when no digit came).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Bot, Call

__all__ = ["DemoBot"]

DEFAULT_INTENTS = {"1": "Sales", "2": "Support", "3": "Billing", "none": "NoInput"}


class DemoBot(Bot):
    name: ClassVar[str] = "demo"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.prompt: str = options.get("prompt", "tone_stream://%(200,0,600)")
        self.say: str | None = options.get("say")
        self.timeout = float(options.get("timeout", 5.0))
        self.intents: Mapping[str, str] = {**DEFAULT_INTENTS, **options.get("intents", {})}

    async def on_call_start(self, call: Call) -> None:
        await call.answer()
        if self.say:
            await call.say(self.say)
            digit = await call.collect_digits(1, self.timeout)
        else:
            digit = await call.collect_digits(1, self.timeout, prompt=self.prompt)
        await call.send_update({"event": "digit", "digit": digit or None})
        intent = self.intents.get(digit or "none", "Unknown")
        await call.finish({"intent": intent, "digit": digit or None})
