"""The application factory: middlewares, typed state and the routes of each concern."""

from __future__ import annotations

from aiohttp import web

from ivagate.api import admin, calls, health
from ivagate.api.auth import bearer_auth
from ivagate.api.errors import json_errors
from ivagate.api.keys import CONTROLLER
from ivagate.controller import Controller
from ivagate.settings import Settings

__all__ = ["create_app"]


def create_app(controller: Controller, settings: Settings) -> web.Application:
    """The HTTP API of ``controller``; run it with ``web.AppRunner`` in the controller's loop."""
    # json_errors is outermost so that auth failures and aiohttp's own errors become JSON too.
    app = web.Application(middlewares=[json_errors, bearer_auth(settings.api.token)])
    app[CONTROLLER] = controller
    for concern in (health, calls, admin):
        app.add_routes(concern.routes)
    return app
