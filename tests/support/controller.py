"""Controller settings for tests: fast timers and the test bots of ``support.bots`` registered."""

from __future__ import annotations

from typing import Any

from ivagate.settings import Settings

from . import bots

__all__ = ["TEST_BOTS", "controller_settings"]

# the controller loads them by "module:Class", as a site's own bots; tests read support.bots
TEST_BOTS = {name: f"support.bots:{name}" for name in bots.__all__}


def controller_settings(port: int, password: str, **sections: Any) -> Settings:
    """Settings for a controller on the event socket at 127.0.0.1:``port`` (overrides as
    keyword sections, merged into the test defaults)."""
    esl = {"host": "127.0.0.1", "port": port, "password": password}
    esl.update(reply_timeout=2.0, reconnect_min=0.05, reconnect_max=0.2)
    esl.update(sections.pop("esl", {}))
    call = {"bots": TEST_BOTS, "final_bye_timeout": 2.0, "drain_timeout": 2.0}
    call.update(sections.pop("call", {}))
    routing = {"bot_header": "X-Bot-Id", "default_bot": "TwoUpdates"}
    routing.update(sections.pop("routing", {}))
    return Settings(esl=esl, call=call, routing=routing, **sections)
