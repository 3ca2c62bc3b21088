"""Every refusal as JSON: a 4xx with its reason, and a 500 for a bug in this program, logged with its traceback."""

from __future__ import annotations

import logging

from aiohttp import web

from client.intake import WebhookError

log = logging.getLogger(__name__)


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WebhookError as error:
        response = web.json_response({"error": error.reason}, status=error.status, headers=error.headers)
        if error.close_connection:
            await _send_and_close(request, response)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {name: error.headers[name] for name in ("Allow", "Retry-After") if name in error.headers}
        return web.json_response({"error": error.reason}, status=error.status, headers=headers or None)
    except Exception:
        log.exception("bug while handling %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


async def _send_and_close(request: web.Request, response: web.Response) -> None:
    """Send `response` now and close the connection behind it.

    Returning a response with the body unread would make aiohttp read and
    discard the rest of the body for up to ten seconds before closing: the
    very hold on the connection a slow caller must not get.
    """
    response.force_close()  # says `Connection: close`
    await response.prepare(request)
    await response.write_eof()
    # Closing the transport flushes the answer written above before the socket closes.
    request.protocol.force_close()
