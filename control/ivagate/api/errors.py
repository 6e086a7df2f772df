"""JSON error responses: every error the API returns has the same body.

``{"error": {"status": 404, "title": "Not Found", "detail": "no call 'abc'"}}``

Handlers raise ``ApiError``; the ``json_errors`` middleware also turns aiohttp's own errors
(unknown route 404, 405, 413 over ``client_max_size``) and unexpected exceptions (500, logged)
into that body, so a client parses one shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["ApiError", "json_errors"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``headers`` go on the response."""

    def __init__(self, status: HTTPStatus, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def _response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"error": {"status": status, "title": HTTPStatus(status).phrase, "detail": detail}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _response(exc.status, exc.detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's default text is "<status>: <reason>"; keep only a detail worth reading.
        default = exc.text is None or exc.text == f"{exc.status}: {exc.reason}"
        detail = exc.reason if default else exc.text
        allow = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _response(exc.status, detail or exc.reason, allow)
    except Exception:
        log.exception("API handler failed: %s %s", request.method, request.path)
        return _response(500, "internal error; see the controller log")
