"""Typed application keys: the only way API handlers reach the controller's state."""

from __future__ import annotations

from aiohttp import web

from ivagate.controller import Controller
from ivagate.settings import CallSettings

__all__ = ["CALL_SETTINGS", "CONTROLLER"]

CONTROLLER = web.AppKey("controller", Controller)
CALL_SETTINGS = web.AppKey("call_settings", CallSettings)
