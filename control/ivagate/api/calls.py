"""Calls: list and inspect them, and drive one from outside its bot.

``{id}`` is the FreeSWITCH channel UUID or the SIP Call-ID. Every answer but the list is the
call's record (``ivagate.calls.records.CallRecord``: identities, bot, timestamps, outcome, INFOs).

* ``GET /calls``: ``{"calls": [record, ...]}``, active calls first, then recently ended ones.
* ``GET /calls/{id}``: one record.
* ``POST /calls/{id}/update``: the body is the JSON object to send as a SIP INFO, in order
  with the bot's own updates. Answers once RingCX answered it (the record's last INFO has
  its ``sip_status``), or after ``edge.report_timeout``.
* ``POST /calls/{id}/finish``: the body (optional) is the final intent; ``"final": true`` is
  added. Answers once the call has ended: RingCX answered the final intent 2xx and sent its
  BYE (or ours after ``call.final_bye_timeout``), outcome Success; or RingCX refused it or
  did not answer, we hung up, outcome Failed with RingCX's answer in ``error``.
* ``POST /calls/{id}/hangup``: optional body ``{"cause": "NORMAL_CLEARING"}``; BYE now.

Errors: 400 body not a JSON object or payload refused (uses ``final``, not serialisable),
404 unknown call, 409 call already ended (or, for update and finish, its final intent already
sent), 413 payload over the call's INFO limit (``call.info_max_bytes``, ``call.udp_info_max_bytes``
on UDP calls). A refused payload changes nothing: the call
goes on.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from ivagate.api.errors import ApiError
from ivagate.api.keys import CONTROLLER
from ivagate.bots.base import CallEnded, HangupCause, PayloadError
from ivagate.calls.session import CallSession
from ivagate.info import encode_info
from ivagate.validation import problems

__all__ = ["routes"]

routes = web.RouteTableDef()


class HangupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: HangupCause = "NORMAL_CLEARING"


@routes.get("/calls")
async def list_calls(request: web.Request) -> web.Response:
    calls = request.app[CONTROLLER].calls.all()
    return web.json_response({"calls": [call.record.as_json() for call in calls]})


@routes.get("/calls/{id}")
async def get_call(request: web.Request) -> web.Response:
    return _record(_call(request))


@routes.post("/calls/{id}/update")
async def update(request: web.Request) -> web.Response:
    call = _before_final(request)
    payload = await _payload(request, call, final=False)
    try:
        await call.send_update(payload)
    except CallEnded as exc:
        raise _ended(call) from exc
    return _record(call)


@routes.post("/calls/{id}/finish")
async def finish(request: web.Request) -> web.Response:
    call = _before_final(request)
    payload = await _payload(request, call, final=True) if request.body_exists else {}
    try:
        await call.finish(payload)
    except CallEnded as exc:
        raise _ended(call) from exc
    except PayloadError as exc:  # the payload was checked: the bot sent its final meanwhile
        raise ApiError(HTTPStatus.CONFLICT, f"call {call.uuid}: {exc}") from None
    return _record(call)


@routes.post("/calls/{id}/hangup")
async def hangup(request: web.Request) -> web.Response:
    call = _live_call(request)
    try:
        cause = HangupRequest.model_validate(await _json(request) if request.body_exists else {})
    except ValidationError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "; ".join(problems(exc, "body"))) from None
    if call.record.final_at is None:
        call.fail("hung up through the HTTP API")
    try:
        await call.hangup(cause.cause)
    except CallEnded as exc:
        raise _ended(call) from exc
    return _record(call)


def _call(request: web.Request) -> CallSession:
    key = request.match_info["id"]
    call = request.app[CONTROLLER].calls.get(key)
    if call is None:
        raise ApiError(HTTPStatus.NOT_FOUND, f"no call {key!r}")
    return call


def _live_call(request: web.Request) -> CallSession:
    call = _call(request)
    if call.ended:
        raise _ended(call)
    return call


def _before_final(request: web.Request) -> CallSession:
    """A live call whose final intent is not sent yet: RingCX reads nothing after it."""
    call = _live_call(request)
    if call.record.final_at is not None:
        raise ApiError(HTTPStatus.CONFLICT, f"call {call.uuid}: the final intent was already sent")
    return call


def _ended(call: CallSession) -> ApiError:
    return ApiError(HTTPStatus.CONFLICT, f"call {call.uuid} has ended ({call.record.outcome})")


def _record(call: CallSession) -> web.Response:
    return web.json_response(call.record.as_json())


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from None


async def _payload(request: web.Request, call: CallSession, *, final: bool) -> Mapping[str, Any]:
    """The request's JSON object, checked as an INFO body before the call sees it."""
    payload: Mapping[str, Any] = await _json(request)
    limit = call.info_max_bytes
    try:
        encode_info(payload, final=final, max_bytes=limit)
    except PayloadError as exc:
        # encode_info has one error type: a payload it accepts without the limit was too large.
        try:
            encode_info(payload, final=final, max_bytes=sys.maxsize)
        except PayloadError:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
    return payload
