"""Operator actions.

* ``POST /admin/drain``: take no new calls (``ivagate_ready=false``: the dialplan answers
  503 at once and the edge moves the call to another node); active calls go on to their end.
  Answers at once with the node's state; ``GET /readyz`` then reports 503.
"""

from __future__ import annotations

from aiohttp import web

from ivagate.api.keys import CONTROLLER

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/admin/drain")
async def drain(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    await controller.drain()
    return web.json_response(
        {
            "draining": controller.draining,
            "ready": controller.ready,
            "active_calls": controller.calls.active_count(),
        }
    )
