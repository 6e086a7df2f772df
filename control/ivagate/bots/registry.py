"""Bots by name: the ``ivagate.bots`` entry point group plus ``call.bots`` (``module:Class``).

Configured bots override entry points of the same name, so a site can replace a built-in.
Classes are imported when first asked for; ``load_all()`` imports every one at start-up, and
checks the options of each bot that has some or is routed to, so a broken bot is reported
before the first call, not during it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from importlib.metadata import entry_points

from pydantic import ValidationError

from ivagate.validation import problems

from .base import Bot

__all__ = ["BotLoadError", "BotRegistry"]

ENTRY_POINT_GROUP = "ivagate.bots"


class BotLoadError(LookupError):
    """A bot name that is unknown, or whose class cannot be imported."""


class BotRegistry(Mapping[str, type[Bot]]):
    """Read-only mapping name -> bot class; ``create(name)`` makes the per-call instance."""

    def __init__(
        self, configured: Mapping[str, str], options: Mapping[str, Mapping[str, object]]
    ) -> None:
        self._targets = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        self._targets.update(configured)
        self._options = options
        self._classes: dict[str, type[Bot]] = {}

    def __getitem__(self, name: str) -> type[Bot]:
        cls = self._classes.get(name)
        if cls is None:
            if name not in self._targets:
                raise KeyError(name)
            cls = self._classes[name] = _import(name, self._targets[name])
        return cls

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def load_all(self, routed: Iterable[str] = ()) -> None:
        """Import every bot class now, and check the options of every bot that has some or
        that ``routed`` names; raises ``BotLoadError`` naming the first broken one."""
        for name in self._targets:
            self[name]
        for name in sorted({*self._options, *routed} & self._targets.keys()):
            try:
                self[name].check_options(self._options.get(name, {}))
            except ValueError as exc:
                reason = "; ".join(problems(exc)) if isinstance(exc, ValidationError) else exc
                raise BotLoadError(f"bot {name!r}: call.bot_options.{name}: {reason}") from exc

    def create(self, name: str) -> Bot:
        """A fresh bot instance for one call, given its ``call.bot_options`` entry."""
        return self[name](self._options.get(name, {}))


def _import(name: str, target: str) -> type[Bot]:
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BotLoadError(f"bot {name!r}: cannot import {target!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Bot)):
        raise BotLoadError(f"bot {name!r}: {target!r} is not a subclass of ivagate.bots.Bot")
    return cls
