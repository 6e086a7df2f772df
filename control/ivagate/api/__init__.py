"""The controller's HTTP API (aiohttp), default ``127.0.0.1:8088``.

One module per concern: ``health`` (``/healthz``, ``/readyz``, ``/metrics``; no token),
``calls`` (``/calls``, ``/calls/{id}`` and its ``update``/``finish``/``hangup``), ``admin``
(``/admin/drain``). ``auth`` checks the bearer token, ``errors`` gives every error one JSON
shape, ``keys`` holds the typed app keys through which handlers reach the controller.
"""

from ivagate.api.app import create_app

__all__ = ["create_app"]
