"""HTTP error responses and the access-token query parameter, shared by the gateway's routes
(the transcoded API in `http.py`, artifact downloads in `downloads.py`)."""

from __future__ import annotations

import grpc
from starlette.responses import JSONResponse

from conveyor.auth.authn import Denied
from conveyor.gateway.transcode import CallError, error_body

#: Query parameter carrying the token for streams opened by a browser's EventSource, which
#: cannot set headers (RFC 6750 section 2.3). Accepted on server-streaming routes and
#: downloads only.
ACCESS_TOKEN_PARAM = "access_token"  # noqa: S105 - a parameter name, not a secret


def error_response(failure: CallError) -> JSONResponse:
    """The JSON error body of a failed call, with its HTTP status."""
    body = error_body(failure)
    return JSONResponse(body, status_code=body["error"]["code"])


def denied_response(denied: Denied) -> JSONResponse:
    """401 with a `WWW-Authenticate: Bearer` challenge, or 403, as the usual JSON error."""
    response = error_response(CallError(denied.code, denied.message))
    if denied.code == grpc.StatusCode.UNAUTHENTICATED:
        challenge = 'Bearer realm="conveyor"'
        if denied.error:
            challenge += f', error="{denied.error}"'
        response.headers["WWW-Authenticate"] = challenge
    return response
