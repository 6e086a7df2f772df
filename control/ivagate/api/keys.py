"""Typed application keys: the only way API handlers reach the controller's state."""

from __future__ import annotations

from aiohttp import web

from ivagate.controller import Controller

__all__ = ["CONTROLLER"]

CONTROLLER = web.AppKey("controller", Controller)
