"""The upstream refuses lmsd (LM Studio's "Require Authentication"): say what to set.

LM Studio (0.4 and later) answers every endpoint but ``/lmstudio-greeting`` with HTTP 401
``invalid_api_key`` when authentication is on and the request has no valid
``Authorization: Bearer`` token. That is an ``UpstreamAuth``, which the Anthropic front
renders as 403 ``permission_error``: Claude Code 2.1.329 shows it at once ("Failed to
authenticate. API Error: 403 ...") and does not retry, where a 401 is retried for minutes
and shown as "Invalid API key" (its own key).
"""

from __future__ import annotations

from ..failures import UpstreamAuth, read_raw_failure

#: The setting that holds the key, as an environment variable (``upstream_api_key``).
API_KEY_ENV = "LMSD_UPSTREAM_API_KEY"
#: Upstream HTTP statuses that mean "not with this key".
REFUSED_STATUSES = frozenset({401, 403})
KEY_FIX = (f"set {API_KEY_ENV} to one of its API tokens and restart lmsd (or set "
           "upstream_api_key in lmsd.toml and send lmsd SIGHUP)")
#: Where LM Studio makes its tokens.
TOKENS_WHERE = "LM Studio: Developer > Server Settings > Manage Tokens"


def key_refused(status: int, message: str, *, key: str, name: str = "LM Studio"
                ) -> UpstreamAuth:
    """The error for a 401/403 from the upstream: a missing key, or a refused one.

    ``message`` is the upstream's own words; ``key`` (never shown) is what lmsd sent.
    """
    if not key:
        return UpstreamAuth(f"{name} requires an API key: {KEY_FIX}")
    said = message.replace(key, "***").strip()[:300]
    return UpstreamAuth(
        f"{name} refused the API key in {API_KEY_ENV} (HTTP {status}"
        f"{': ' + said if said else ''}): set a valid API token and restart lmsd (or set "
        f"upstream_api_key in lmsd.toml and send lmsd SIGHUP)")


def key_refused_answer(status: int, body: bytes, *, key: str, name: str = "LM Studio"
                       ) -> UpstreamAuth:
    """:func:`key_refused` from the upstream's raw answer (a JSON error body, or text)."""
    return key_refused(status, read_raw_failure(body, status).message, key=key, name=name)
