"""Lock: a mutex on one Lease, with fencing tokens, on the same wire format
as Go Leasehold's lock.Mutex (they can share a Lease)."""

from __future__ import annotations

import os
import threading
from typing import Optional

from . import errors
from .client import LeaseClient, RequestCounts
from .clock import Clock
from .config import Seconds, Timing, check, default_identity, validate_identity, validate_ref
from .context import Context
from .holder import Candidate, Held as _HeldElsewhere, Term
from .observer import Observer, ObserverThread, State


class Held:
    """One acquisition of a Lock. ``token`` is its fencing token (int);
    ``ctx`` ends when the lock is lost (LeaseLost, RenewDeadlineExceeded) —
    strictly before another process could see the lease expire — or is
    released (LeaseReleased). Renews in the background until release().
    A context manager: ``with lock.acquire() as held: ...`` releases on exit.
    Safe for concurrent use."""

    def __init__(self, lock: "Lock", term: Term, watcher: ObserverThread):
        self._lock, self._term, self._watcher = lock, term, watcher
        self.token: int = term.token
        self.ctx: Context = term.ctx
        self._once = threading.Lock()
        self._released = False

    def done(self) -> bool:
        """True once the lock is lost or released."""
        return self.ctx.done()

    @property
    def deadline(self) -> float:
        """Monotonic time at which ctx ends unless a renewal succeeds first."""
        return self._term.deadline

    def release(self) -> None:
        """Gives the lock up so that a waiter takes it at once, stops
        renewing and watching. Call it after the guarded work has stopped.
        Idempotent. Raises APIError if the release could not be written (the
        lease then expires after lease_duration)."""
        with self._once:
            if self._released:
                return
            self._released = True
            try:
                self._term.release()
            finally:
                self._lock._remember(self._watcher.obs.state())
                self._watcher.stop()

    def __enter__(self) -> "Held":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Lock:
    """A distributed mutex on the Lease ``namespace/name``.

    ``acquire(timeout=None)`` blocks until the lock is free in this process's
    view — woken by a watch of the Lease, no polling — and returns a Held
    handle; it raises LockTimeout after timeout seconds. ``try_acquire()``
    makes one attempt and raises Locked naming the holder when the lock is
    held. Each acquisition has its own fencing token (an int that only
    grows): pass it to what the lock guards and have that reject older ones.

    ``identity`` defaults to $POD_NAME or the hostname plus a random suffix,
    unique per Lock. Timing as for Elector (lease_duration is how long a
    crashed holder blocks others). A holder is never preempted by a planned
    handoff; a release reserved for another identity (a Go waiter's claim)
    is honoured: this Lock waits two retry periods (at most one lease
    duration) before competing.

    The guarantees and clock assumptions are those of Elector; a work that
    ignores ``held.ctx``, or a paused process, is stopped only by resources
    that check the token. Safe for concurrent use.
    """

    def __init__(self, api=None, namespace: str = "default", name: str = "", identity: Optional[str] = None, *,
                 lease_duration: Optional[Seconds] = None, renew_deadline: Optional[Seconds] = None,
                 retry_period: Optional[Seconds] = None, clock: Optional[Clock] = None):
        problems: list = []
        validate_ref(namespace, name, problems)
        if identity is None:
            try:
                identity = f"{default_identity()}-{os.urandom(4).hex()}"
            except OSError as e:
                problems.append(f"identity is not set and no default could be made: {e}")
                identity = ""
        else:
            identity = validate_identity(identity, problems)
        self.timing = Timing.build(lease_duration, renew_deadline, retry_period, problems)
        check("Lock", problems)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.clock = clock or Clock()
        self.counts = RequestCounts()
        self._client = LeaseClient(api, namespace, name, self.counts)
        self._mu = threading.Lock()
        self._memory: Optional[State] = None

    def _remember(self, st: State) -> None:
        with self._mu:
            self._memory = st

    def _start(self):
        obs = Observer(self._client, self.clock, self.timing.retry_period)
        with self._mu:
            obs.seed(self._memory)
        cand = Candidate(obs, self.identity, self.timing, self.clock, preemptible=False)
        return cand, ObserverThread(obs).start()

    def acquire(self, timeout: Optional[float] = None, stop: Optional[Context] = None) -> Held:
        """Blocks until the lock is held and returns the Held handle. Raises
        LockTimeout after timeout seconds (None: no limit), the cause of
        stop (a Context) if it ends first, and a permanent APIError
        (forbidden: the message names the verb) at once."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise errors.ConfigError("Lock.acquire", [f"timeout {timeout!r} must be a non-negative number of seconds or None"])
        cand, watcher = self._start()
        deadline = None if timeout is None else self.clock.now() + timeout
        waiting = Context(parents=[stop])
        try:
            term = cand.acquire(waiting, deadline)
        except BaseException:
            self._remember(cand.obs.state())
            watcher.stop()
            raise
        finally:
            waiting.detach()
        if term is None:
            st = cand.obs.state()
            self._remember(st)
            watcher.stop()
            if watcher.error is not None:
                raise watcher.error
            if stop is not None and stop.done():
                raise stop.cause  # type: ignore[misc]
            raise errors.LockTimeout(f"{self.namespace}/{self.name}", timeout or 0, st.holder or None)
        return Held(self, term, watcher)

    def try_acquire(self) -> Held:
        """Takes the lock if it is free in this process's view, else raises
        Locked naming the holder and when its lease expires here. Waits only
        for the first read of the Lease."""
        cand, watcher = self._start()
        try:
            term = cand.try_acquire(Context())
        except _HeldElsewhere as h:
            self._remember(cand.obs.state())
            watcher.stop()
            raise errors.Locked(f"{self.namespace}/{self.name}", h.holder, h.expires_in, h.preferred_for) from None
        except BaseException:
            self._remember(cand.obs.state())
            watcher.stop()
            raise
        return Held(self, term, watcher)

    def requests(self) -> dict:
        """API requests made so far, by kind (get, create, update, watch)."""
        return self.counts.snapshot()
