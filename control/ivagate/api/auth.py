"""Bearer-token authentication of the control API.

Every route needs ``Authorization: Bearer <IVAGATE_API__TOKEN>`` except the probes and the
metrics in ``OPEN_PATHS``, which load balancers and Prometheus scrape without a secret. With
no token configured the protected routes refuse every request: the API never runs open.
"""

from __future__ import annotations

import hmac
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

from ivagate.api.errors import ApiError

__all__ = ["OPEN_PATHS", "bearer_auth"]

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ivagate"'}


def bearer_auth(token: SecretStr | None) -> Middleware:
    """A middleware admitting requests that carry ``token``."""
    expected = None if token is None else f"Bearer {token.get_secret_value()}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if expected is None:
            raise ApiError(
                HTTPStatus.UNAUTHORIZED, "no API token configured (IVAGATE_API__TOKEN)", _CHALLENGE
            )
        given = request.headers.get("Authorization", "").encode()
        # Constant-time comparison: the token must not leak through response timing.
        if not hmac.compare_digest(given, expected):
            raise ApiError(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", _CHALLENGE)
        return await handler(request)

    return middleware
