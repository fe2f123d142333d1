"""LM Studio's "Require Authentication" (0.4+): every endpoint but the greeting wants a
valid ``Authorization: Bearer <token>``; without one the answer is HTTP 401.

Wordings: the missing-token one is LM Studio 0.4.18's, as logged in
agustif/opencode-lmstudio#41; "Malformed LM Studio API token provided: lm-studio-*****"
is quoted by users for a token that does not look like one. The wording for a well-formed
but unknown token was not found; ``UNKNOWN_TOKEN`` stands in for it.
"""

from __future__ import annotations

import json
import re

from quart import Response, request

OPEN_PATHS = frozenset({"/lmstudio-greeting"})
MISSING_TOKEN = (
    "An LM Studio API token is required to make requests to this server, but none was "
    "provided using the Authorization header using the 'Bearer' scheme (i.e., "
    "'Authorization: Bearer $LM_API_TOKEN'). Learn more at: "
    "https://lmstudio.ai/docs/developer/core/authentication."
)
UNKNOWN_TOKEN = "Invalid LM Studio API token provided."  # unverified wording
_TOKEN_SHAPE = re.compile(r"sk-lm-[A-Za-z0-9]+:[A-Za-z0-9]+")


def refusal(api_key: str | None, path: str, authorization: str | None,
            x_api_key: str | None = None) -> Response | None:
    """LM Studio's 401 for this request, or None when it may pass."""
    if not api_key or path in OPEN_PATHS:
        return None
    token = None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    elif x_api_key and path.startswith("/v1/messages"):
        token = x_api_key.strip()
    if token == api_key:
        return None
    if not token:
        message = MISSING_TOKEN
    elif not _TOKEN_SHAPE.fullmatch(token):
        message = f"Malformed LM Studio API token provided: {token[:10]}*****"
    else:
        message = UNKNOWN_TOKEN
    body = {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}}
    return Response(json.dumps(body), status=401, content_type="application/json")


def check_request(api_key: str | None) -> Response | None:
    """For ``app.before_request``: the 401 when the emulator requires ``api_key``."""
    return refusal(api_key, request.path, request.headers.get("Authorization"),
                   request.headers.get("x-api-key"))
