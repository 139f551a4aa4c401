"""OpenTelemetry spans of the library itself (issue 21), through ``opentelemetry-api`` only.

As OpenTelemetry's guidance for libraries asks, the library depends on the
API alone (the optional ``otel`` extra) and never on the SDK: once the
application has set a tracer provider, spans appear with no option to turn
on. Without the API installed, or with no provider set, nothing is made.

* ``lwa.lookup`` (internal): one per request that needed more than the
  in-process cache, with ``lwa.cache.outcome`` ``miss``, ``joined``,
  ``shared`` or ``stale``, the route policy, and LWA's status and request id;
  a cache hit is a ``lwa.lookup`` span of no duration with outcome ``hit``.
* ``lwa.tokeninfo`` and ``lwa.profile`` (client): its children, one per HTTP
  call, with the HTTP status, ``x-amzn-RequestId`` and, when no answer came,
  the failure reason (``certificate``, ``timeout``, …).

What is on a span is fixed text, numbers, LWA's request id and the route
policy: never a token, a digest of one, a code or a secret.

Cost: the provider is looked for when a resolver is built and on every
lookup that asks LWA (which costs a round trip anyway); a cache hit only
reads whether one was found. See ``benchmarks/bench_tracing.py``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from .errors import AuthError, UpstreamUnavailable
from .flow import Outcome, Resolved, UpstreamFailure

if TYPE_CHECKING:
    from .routes import Policy

__all__ = [
    "Note",
    "annotate",
    "call_result",
    "call_span",
    "current_tracer",
    "hit_span",
    "lookup_span",
]

#: ``opentelemetry.trace`` once imported, ``False`` when it is not installed.
_api: Any = None
#: ``(provider, tracer)`` of the provider found last.
_found: tuple[Any, Any] | None = None


def _trace_api() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import trace
        except ImportError:  # the ``otel`` extra is not installed: no spans
            _api = False
        else:
            _api = trace
    return _api or None


def current_tracer() -> Any:
    """The library's tracer from the application's provider, or ``None`` when
    OpenTelemetry is not installed or no provider has been set."""
    global _found
    api = _trace_api()
    if api is None:
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None
    found = _found
    if found is None or found[0] is not provider:
        from ._version import __version__

        found = _found = (provider, provider.get_tracer("lwa_middleware", __version__))
    return found[1]


class Note:
    """What one ``lwa.lookup`` span learns while its lookup runs."""

    __slots__ = ("outcome", "request_id", "span", "status", "tracer")

    def __init__(self, tracer: Any, span: Any) -> None:
        self.tracer = tracer
        self.span = span
        self.outcome = "miss"
        self.status: int | None = None
        self.request_id: str | None = None


#: The lookup span of the running request, if it is traced. Worker threads
#: and tasks that run part of it see it through the copied context.
_NOTE: contextvars.ContextVar[Note | None] = contextvars.ContextVar("lwa_lookup", default=None)


def policy_label(policy: Policy) -> str:
    """The route policy in a few words: ``required``, ``required scopes=postal_code``…"""
    parts = [policy.access.name.lower()]
    if policy.scopes:
        parts.append("scopes=" + ",".join(sorted(policy.scopes)))
    if policy.revalidate:
        parts.append("revalidate")
    return " ".join(parts)


def _error_attributes(span: Any, error: AuthError) -> None:
    attributes = {
        "lwa.error": error.error,
        "lwa.endpoint": error.lwa_endpoint,
        "lwa.status": error.lwa_status,
        "lwa.request_id": error.lwa_request_id,
        "lwa.failure.reason": error.lwa_reason,
    }
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def _set_error(span: Any, error: AuthError) -> None:
    _error_attributes(span, error)
    if isinstance(error, UpstreamUnavailable):
        # A refused token is the client's problem; LWA or this process failing is ours.
        span.set_status(_api.Status(_api.StatusCode.ERROR, error.lwa_reason or error.error))


@contextmanager
def lookup_span(tracer: Any, policy: Policy) -> Iterator[Note]:
    """The ``lwa.lookup`` span around one request's resolution, current while it runs."""
    with tracer.start_as_current_span(
        "lwa.lookup",
        attributes={"lwa.route.policy": policy_label(policy)},
        # An exception's text and stack are not recorded: only fixed fields.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        note = Note(tracer, span)
        token = _NOTE.set(note)
        try:
            yield note
        except AuthError as error:
            _set_error(span, error)
            raise
        finally:
            _NOTE.reset(token)
            span.set_attribute("lwa.cache.outcome", note.outcome)
            if note.status is not None:
                span.set_attribute("lwa.status", note.status)
            if note.request_id is not None:
                span.set_attribute("lwa.request_id", note.request_id)


def annotate(
    outcome: str | None = None,
    resolved: Resolved | None = None,
    error: AuthError | None = None,
) -> None:
    """Tell the running lookup span (if any) its outcome, what LWA answered,
    or why it failed (kept when a stale identity is served all the same)."""
    note = _NOTE.get()
    if note is None:
        return
    if error is not None:
        _error_attributes(note.span, error)
    if outcome is not None:
        note.outcome = outcome
    if resolved is not None:
        note.status = 200
        note.request_id = resolved.request_id


def hit_span(tracer: Any) -> None:
    """A cache hit: a ``lwa.lookup`` span of no duration."""
    tracer.start_span("lwa.lookup", attributes={"lwa.cache.outcome": "hit"}).end()


def call_span(endpoint: str) -> AbstractContextManager[Any]:
    """The span of one HTTP call to LWA, a child of the running lookup span
    (nothing when the lookup is not traced)."""
    note = _NOTE.get()
    if note is None:
        return nullcontext()
    return note.tracer.start_as_current_span(  # type: ignore[no-any-return]
        "lwa." + endpoint,
        kind=_api.SpanKind.CLIENT,
        attributes={"lwa.endpoint": endpoint, "http.request.method": "GET"},
        record_exception=False,
        set_status_on_exception=False,
    )


def call_result(span: Any, outcome: Outcome) -> None:
    """Record on ``span`` (from :func:`call_span`) what one call gave."""
    if span is None:
        return
    if isinstance(outcome, UpstreamFailure):
        span.set_attribute("lwa.failure.reason", outcome.code)
        span.set_status(_api.Status(_api.StatusCode.ERROR, outcome.code))
        return
    span.set_attribute("http.response.status_code", outcome.status)
    if outcome.request_id is not None:
        span.set_attribute("lwa.request_id", outcome.request_id)
