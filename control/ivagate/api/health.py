"""Probes and metrics, open to load balancers and Prometheus (no token).

* ``GET /healthz``: 200 while the process serves requests (liveness).
* ``GET /readyz``: 200 while this node takes new calls, else 503 (readiness: ESL connected
  and not draining); the body says which condition fails.
* ``GET /metrics``: Prometheus text exposition of the controller's ``Metrics``.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ivagate.api.keys import CONTROLLER

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    body = {"ready": controller.ready, "esl_connected": controller.connected}
    return web.json_response(body, status=200 if controller.ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[CONTROLLER].metrics.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
