"""The steps of the resolver's plans, and what its two drivers share.

A plan (:mod:`.resolver`) is a generator that yields :class:`AskLWA` or
:class:`Share` steps and is sent their results; the blocking and the async
driver only carry the steps out. Kept apart so that the resolver stays one
screenful of policy per method.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import AuthError
from .flow import Lookup, Resolved

if TYPE_CHECKING:
    from .cache import Entry
    from .routes import Policy
    from .shared_cache import SharedTier

_F = TypeVar("_F")
_D = TypeVar("_D")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class AskLWA:
    """Plan step: run this lookup against LWA; the plan is sent the
    ``Resolved``, or the :class:`AuthError` the lookup raised."""

    lookup: Lookup


@dataclass(frozen=True, slots=True)
class Share:
    """Plan step: one call on the shared cache, typed against
    :class:`~.shared_cache.SharedTier` (so mypy checks it); the plan is sent
    its result (awaited, from the async tier)."""

    call: Callable[[SharedTier[Any, Any]], Any]


Plan = Generator["AskLWA | Share", Any, _T]


def advance(plan: Plan[Any], reply: Any) -> tuple[bool, Any]:
    """``(False, next step)`` of ``plan`` sent ``reply``, or ``(True, its result)``."""
    try:
        return False, plan.send(reply)
    except StopIteration as stop:
        return True, stop.value


def ask(tier: SharedTier[_F, _D] | None, step: Share) -> Any:
    """``step`` carried out on ``tier`` (typed, so mypy checks that each
    driver is a :class:`SharedTier`): its answer, or its awaitable."""
    if tier is None:  # a plan asks only when Redis is configured
        raise RuntimeError("a plan asked the shared cache, and there is none")
    return step.call(tier)


def outcome(run: Callable[[Lookup], Resolved], lookup: Lookup) -> Resolved | AuthError:
    """What a lookup gives, failure included: plans are sent it, not thrown it."""
    try:
        return run(lookup)
    except AuthError as error:
        return error


def flight_slot(key: bytes, policy: Policy) -> bytes:
    """The single-flight slot of a lookup: a ``revalidate()`` lookup only
    joins others that also ask LWA, never one answered from Redis."""
    return key + b"\0revalidate" if policy.revalidate else key


def sufficient(policy: Policy, entry: Entry) -> Entry | None:
    """A joined lookup's entry, if it brought what ``policy`` needs."""
    return entry if entry.has_profile or not policy.needs_profile else None
