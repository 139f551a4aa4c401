"""Structured log fields and event payloads of a lookup (issue 21).

Every record the library logs carries the same ``extra=`` fields, so a JSON
formatter can use them as they are (absent values are ``None``):

==================  ========================================================
field               value
==================  ========================================================
``lwa_event``       what happened: ``upstream_error``, ``saturated``, …
``lwa_reason``      why, one word: ``certificate``, ``timeout``, ``status``…
``lwa_route``       the route policy: ``required``, ``required scopes=…``
``lwa_status``      LWA's HTTP status, when it answered
``lwa_request_id``  LWA's ``x-amzn-RequestId``, for Amazon's support
``lwa_latency``     seconds the lookup took
==================  ========================================================

Nothing here ever holds a token, a digest of one, a code or a secret.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .breaker import Throttle
    from .errors import AuthError
    from .routes import Policy

__all__ = ["error_data", "fields", "logger", "lwa_answer", "text", "warn", "with_request_id"]

#: The resolver's logger (lookups, LWA failures, saturation, the on_event hook).
logger = logging.getLogger("lwa_middleware")


def fields(
    event: str,
    *,
    reason: str | None = None,
    route: str | None = None,
    status: int | None = None,
    request_id: str | None = None,
    latency: float | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of one log record: every field, ``None`` when unknown."""
    return {
        "lwa_event": event,
        "lwa_reason": reason,
        "lwa_route": route,
        "lwa_status": status,
        "lwa_request_id": request_id,
        "lwa_latency": latency,
    }


def error_fields(
    event: str, error: AuthError, policy: Policy | None, latency: float | None
) -> dict[str, Any]:
    from ._otel import policy_label

    return fields(
        event,
        reason=error.lwa_reason,
        route=policy_label(policy) if policy is not None else None,
        status=error.lwa_status,
        request_id=error.lwa_request_id,
        latency=latency,
    )


def text(error: AuthError) -> str:
    """``error``'s description, with LWA's request id when it answered: the
    log line an operator copies to Amazon's support."""
    return with_request_id(error.description, error.lwa_request_id)


def with_request_id(message: str, request_id: str | None) -> str:
    """``message``, and LWA's request id when there is one."""
    return message if request_id is None else f"{message} [LWA request id {request_id}]"


def error_data(error: AuthError, seconds: float) -> dict[str, Any]:
    """The ``on_event`` payload of a failed lookup (``rejected``, ``upstream_error``)."""
    return {
        "seconds": seconds,
        "reason": error.lwa_reason,
        "description": error.description,
        "endpoint": error.lwa_endpoint,
        "status": error.lwa_status,
        "request_id": error.lwa_request_id,
    }


def warn(throttle: Throttle, message: str, extra: dict[str, Any]) -> None:
    """Log ``message`` at WARNING, at most once per the throttle's interval,
    with the count of those left out; the fields are the latest one's."""
    held = throttle.allow()
    if held:
        logger.warning("%s (%d more since the last warning)", message, held, extra=extra)
    elif held is not None:
        logger.warning("%s", message, extra=extra)


def lwa_answer(endpoint: str | None, status: int | None, request_id: str | None) -> dict[str, Any]:
    """What ``inspect`` prints about LWA's deciding answer (``{}`` if none came)."""
    if status is None and request_id is None:
        return {}
    return {"lwa": {"endpoint": endpoint, "status": status, "request_id": request_id}}
