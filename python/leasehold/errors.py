"""Exceptions raised by leasehold, and the causes a term ends with.

API failures are :class:`APIError` subclasses that name the verb, the Lease
and what to do about it; ``permanent`` tells whether retrying can help.
"""

from __future__ import annotations

from typing import Iterable, Optional


class LeaseholdError(Exception):
    """Base class of every exception leasehold raises on purpose."""


class ConfigError(LeaseholdError, ValueError):
    """The configuration is invalid. ``problems`` lists every problem found,
    each naming the parameter and its value."""

    def __init__(self, where: str, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__(f"leasehold: {where}: invalid configuration: " + "; ".join(self.problems))


# API errors -----------------------------------------------------------------


class APIError(LeaseholdError):
    """A failed request on one Lease.

    Attributes: ``verb`` (get, create, update, watch), ``namespace``, ``name``,
    ``status`` (HTTP status, 0 when there was no answer) and ``detail`` (the
    apiserver's message or the transport error).
    """

    #: Retrying the same request cannot help without a change elsewhere
    #: (RBAC, credentials, the request itself).
    permanent = False
    kind = "failed"

    def __init__(self, verb: str, namespace: str, name: str, status: int = 0, detail: str = ""):
        self.verb, self.namespace, self.name = verb, namespace, name
        self.status, self.detail = status, detail
        super().__init__(self._message())

    def _message(self) -> str:
        return f"leasehold: {self.verb} lease {self.namespace}/{self.name}: {self.kind}: {self.detail}"


class NotFoundError(APIError):
    """The Lease does not exist (HTTP 404)."""

    kind = "not found"


class AlreadyExistsError(APIError):
    """A create found the Lease already there (HTTP 409 AlreadyExists)."""

    kind = "already exists"


class ConflictError(APIError):
    """The Lease changed since it was read (HTTP 409): re-read it. Never fatal
    to an Elector or Lock, which handle it."""

    kind = "conflict, the lease changed since it was read"


class ForbiddenError(APIError):
    """RBAC denied the request (HTTP 403). The message names the missing verb."""

    permanent = True
    kind = "forbidden"

    def _message(self) -> str:
        return (
            f"leasehold: {self.verb} lease {self.namespace}/{self.name}: forbidden: RBAC must allow verb "
            f'"{self.verb}" on resource "leases" (API group coordination.k8s.io) in namespace '
            f'"{self.namespace}" (a candidate needs get, list, watch, create, update): {self.detail}'
        )


class UnauthorizedError(APIError):
    """The credentials were rejected (HTTP 401)."""

    permanent = True
    kind = "unauthorized, the credentials were rejected"


class InvalidError(APIError):
    """The apiserver rejected the request as invalid (HTTP 400 or 422)."""

    permanent = True
    kind = "invalid"


class GoneError(APIError):
    """A watch's resourceVersion is too old (HTTP 410): re-list."""

    kind = "resource version too old"


class UnavailableError(APIError):
    """The apiserver could not be reached or did not answer in time.
    Transient: retrying may succeed."""

    kind = "apiserver unavailable"


# Why a term ends --------------------------------------------------------------


class TermEnded(LeaseholdError):
    """Base class of the causes a leadership (or lock) context ends with;
    ``ctx.cause`` is an instance. ``ctx.check()`` raises it."""


class LeaseLost(TermEnded):
    """Another identity holds the lease, or it was deleted."""

    def __init__(self, msg: str = "leasehold: lost to another holder"):
        super().__init__(msg)


class RenewDeadlineExceeded(TermEnded):
    """No renewal succeeded within renew_deadline of when the last successful
    one was sent; the context ended before anyone else could take the lease."""

    def __init__(self, msg: str = "leasehold: renew deadline passed"):
        super().__init__(msg)


class HandoffRequested(TermEnded):
    """The lease names another preferred holder (planned handoff); it is still
    held and renewed until the work returns and it is released."""

    def __init__(self, to: str = ""):
        self.to = to
        super().__init__(f"leasehold: another holder is preferred (planned handoff to {to!r})")


class LeaseReleased(TermEnded):
    """The term was released (Held.release, or the elector settled it)."""

    def __init__(self, msg: str = "leasehold: released"):
        super().__init__(msg)


class Resigned(TermEnded):
    """Elector.release (resign) ended the term."""

    def __init__(self, msg: str = "leasehold: resigned"):
        super().__init__(msg)


class Stopped(TermEnded):
    """The elector (or the wait of a lock) was stopped: Elector.stop, the stop
    context, or a signal (see leasehold.signals)."""

    def __init__(self, msg: str = "leasehold: stopped"):
        super().__init__(msg)


# Locks ---------------------------------------------------------------------------


class Locked(LeaseholdError):
    """try_acquire found the lock validly held (or reserved for a planned
    handoff to another identity). ``holder`` is the holder ("" when reserved),
    ``preferred_for`` the identity it is reserved for, ``expires_in`` the
    seconds until it expires in this process's view unless renewed."""

    def __init__(self, lease: str, holder: str, expires_in: float, preferred_for: str = ""):
        self.lease, self.holder, self.expires_in, self.preferred_for = lease, holder, expires_in, preferred_for
        who = f"reserved for {preferred_for!r} (planned handoff)" if not holder and preferred_for else f"held by {holder!r}"
        super().__init__(f"leasehold: lock {lease} is {who}; expires in {expires_in:.3f}s unless renewed")


class LockTimeout(LeaseholdError, TimeoutError):
    """acquire(timeout=...) gave up. ``holder`` is who held it last."""

    def __init__(self, lease: str, timeout: float, holder: Optional[str]):
        self.lease, self.timeout, self.holder = lease, timeout, holder
        super().__init__(f"leasehold: lock {lease} not acquired within {timeout}s (held by {holder!r})")
