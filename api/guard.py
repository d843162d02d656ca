"""What a request with a body must pass before the body is read.

FastAPI reads and parses a body before it runs the dependencies that check the token, so an
unauthenticated ``PUT /zones`` of 500 MB took 3.5 GB and held the event loop (ingest, rules
and MQTT share it) for seconds before its 401. Every endpoint that takes a body needs the
operator role at least, ``PUT /zones`` the admin's: this ASGI middleware asks for it, and for
a declared, bounded size, from the headers alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Authenticator, AuthError, Role

#: Largest body of ``PUT /zones`` (a port's zones are kilobytes; a detailed coastline a few MB).
MAX_ZONES_BYTES = 32 * 1024 * 1024
#: Largest body of any other request (a note, a snooze).
MAX_BODY_BYTES = 64 * 1024
_READING = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyGuard:
    """ASGI middleware: a token of the operator role or above, a Content-Length within the
    route's bound; else the answer, without reading a byte of the body."""

    def __init__(self, app: ASGIApp, *, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READING:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        refused = self._refused(scope, headers)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message, extra = refused
        # The shape of the API's other errors (see api.app._error).
        await JSONResponse({"error": message, "detail": None}, status_code=status,
                           headers=extra)(scope, receive, send)

    def _refused(self, scope: Scope, headers: Mapping[str, str]
                 ) -> tuple[int, str, dict[str, str]] | None:
        zones = scope["path"].rstrip("/") == "/zones"
        try:  # the zones are the admin's: an operator's 32 MB was parsed before its 403
            self.auth.check(headers.get("authorization"), Role.ADMIN if zones else Role.OPERATOR)
        except AuthError as exc:
            return exc.status, exc.message, (
                {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {})
        limit = MAX_ZONES_BYTES if zones else MAX_BODY_BYTES
        length = headers.get("content-length")
        if length is None:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return 411, "a body needs a Content-Length", {}
            return None  # no body at all
        if not length.isdigit():
            return 400, "Content-Length is not a number", {}
        if int(length) > limit:
            return 413, f"body of {int(length)} bytes is over the limit of {limit}", {}
        return None
