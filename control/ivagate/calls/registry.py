"""The controller's table of calls: active ones and the most recent ended ones.

``get(key)`` by FreeSWITCH UUID or SIP Call-ID (``None`` if unknown), iteration / ``all()``
(active calls, then the most recent ended ones), ``active()``, ``len()``. Ended calls stay
listed (the newest ``call.keep_ended``) so ``GET /calls/{id}`` and "409 already ended" keep
working after the BYE.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from .session import CallSession

__all__ = ["CallRegistry"]


class CallRegistry:
    """Active calls and the most recent ended ones, by UUID (and SIP Call-ID)."""

    def __init__(self, keep_ended: int = 1000) -> None:
        self._active: dict[str, CallSession] = {}
        self._ended: OrderedDict[str, CallSession] = OrderedDict()
        self._by_call_id: dict[str, str] = {}
        self._keep_ended = keep_ended

    def add(self, call: CallSession) -> None:
        self._active[call.uuid] = call
        self._by_call_id[call.sip_call_id] = call.uuid

    def get(self, key: str) -> CallSession | None:
        """A call by FreeSWITCH UUID or SIP Call-ID."""
        uuid = self._by_call_id.get(key, key)
        return self._active.get(uuid) or self._ended.get(uuid)

    def active(self) -> list[CallSession]:
        return list(self._active.values())

    def active_count(self) -> int:
        return len(self._active)

    def all(self) -> list[CallSession]:
        return [*self._active.values(), *reversed(self._ended.values())]

    def __iter__(self) -> Iterator[CallSession]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._active) + len(self._ended)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._active or uuid in self._ended

    def retire(self, call: CallSession) -> None:
        """Move an ended call to the ended list, forgetting the oldest beyond the limit."""
        if self._active.pop(call.uuid, None) is None:
            return
        self._ended[call.uuid] = call
        while len(self._ended) > self._keep_ended:
            _, old = self._ended.popitem(last=False)
            self._by_call_id.pop(old.sip_call_id, None)
