"""Observer: follows one Lease through a watch (no polling).

It reads the Lease once, then watches it from the version read (field
selector metadata.name), resuming from the last resourceVersion seen when a
watch ends, re-reading when the version is too old (HTTP 410) or on request.
Each change of the record is stamped with the local monotonic time at which
it was seen; expiry is judged only from that time plus the record's own
leaseDurationSeconds, never from timestamps written by other clocks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Optional, Tuple

from . import errors
from .client import LeaseClient, Watch, status_error
from .clock import Clock
from .context import Context, Signal
from .record import Snapshot, compare_resource_versions

log = logging.getLogger("leasehold")


@dataclasses.dataclass(frozen=True)
class State:
    """What an Observer knows. ``observed_at`` is the local monotonic time at
    which the record last changed (or the Lease appeared or disappeared)."""

    synced: bool = False
    lease: Optional[Snapshot] = None
    observed_at: float = 0.0
    err: Optional[errors.APIError] = None

    @property
    def holder(self) -> str:
        return self.lease.record.holder if self.lease else ""

    @property
    def resource_version(self) -> str:
        return self.lease.resource_version if self.lease else ""

    def expires_at(self) -> Optional[float]:
        """observed_at plus the record's duration; None when not held."""
        if not self.lease or not self.lease.record.held:
            return None
        return self.observed_at + self.lease.record.lease_duration


class _Resync(Exception):
    pass


class Observer:
    """Keeps the latest State of one Lease. ``state()`` never blocks on the
    network; ``changed`` is a Signal bumped at every change. Safe for
    concurrent use; ``run(stop)`` (usually on a thread) makes progress."""

    def __init__(self, client: LeaseClient, clock: Clock, retry: float):
        self.client, self.clock, self.retry = client, clock, retry
        self.changed = Signal()
        self._mu = threading.Lock()
        self._state = State()
        self._last_rv = ""
        self._offers = 0
        self._seed: Optional[State] = None
        self._resync = threading.Event()
        self._watch: Optional[Watch] = None

    def state(self) -> State:
        with self._mu:
            return self._state

    def current(self) -> Tuple[State, int]:
        """The state and the generation of changed to wait on for the next
        change (taken first, so that no change in between is missed)."""
        gen = self.changed.gen()
        return self.state(), gen

    def seed(self, prev: Optional[State]) -> None:
        """Continues an earlier observation (a previous Observer of the same
        Lease in this process): if the first read finds the same object at the
        same resourceVersion, its observed_at is kept, so a lock retried in
        short bouts still sees a crashed holder's lease expire."""
        with self._mu:
            self._seed = prev

    def offer(self, snap: Snapshot) -> None:
        """Records a snapshot obtained outside the watch (the result of our
        own write). Versions older than what is known are ignored."""
        with self._mu:
            self._offers += 1
            self._apply(snap, snap.resource_version)
        self.changed.notify()

    def resync(self) -> None:
        """Asks run to re-read the Lease and restart its watch (after a
        conflict that no event explains). Does not block."""
        self._resync.set()
        with self._mu:
            w = self._watch
        if w is not None:
            w.close()

    # -- internals ------------------------------------------------------------

    def _apply(self, s: Optional[Snapshot], rv: str) -> bool:
        """Must hold _mu. Reports whether the state changed."""
        st = self._state
        if st.synced and self._last_rv and rv:
            c = compare_resource_versions(rv, self._last_rv)
            if c is not None and c <= 0:
                return False
        if rv:
            self._last_rv = rv
        now = self.clock.now()
        observed = st.observed_at
        seed = self._seed
        if not st.synced and s is not None and seed is not None and seed.lease is not None \
                and s.uid == seed.lease.uid and s.resource_version == seed.lease.resource_version:
            observed = seed.observed_at
        elif not st.synced or (st.lease is None) != (s is None):
            observed = now
        elif s is not None and (s.uid != st.lease.uid or not s.record.same_state(st.lease.record)):
            observed = now
        self._state = State(synced=True, lease=s, observed_at=observed, err=None)
        return True

    def _absent(self) -> None:
        """Must hold _mu: records that the Lease does not exist."""
        st = self._state
        if st.synced and st.lease is None and st.err is None:
            return
        was_present = st.lease is not None or not st.synced
        self._state = State(synced=True, lease=None,
                            observed_at=self.clock.now() if was_present else st.observed_at)

    def _set_err(self, err: Optional[errors.APIError]) -> None:
        with self._mu:
            if self._state.err is None and err is None:
                return
            self._state = dataclasses.replace(self._state, err=err)
        self.changed.notify()

    def run(self, stop: Context) -> Optional[errors.APIError]:
        """Watches until stop ends (returns None). Errors are published in
        State.err; transient ones are retried every retry seconds; a
        permanent one (forbidden, unauthorized, invalid) ends run and is
        returned, since retrying cannot help without a change of RBAC or
        credentials."""
        unsub = stop._subscribe(self._interrupt)
        try:
            while not stop.done():
                try:
                    rv = self._read()
                    self._follow_watches(stop, rv)
                except _Resync:
                    continue
                except errors.GoneError:
                    continue  # re-read at once
                except errors.APIError as e:
                    if stop.done():
                        return None
                    self._set_err(e)
                    if e.permanent:
                        return e
                    log.debug("watch of lease %s/%s failed, will retry: %s", self.client.namespace, self.client.name, e)
                    self._resync.wait(self.clock.real(self.retry))
                    if stop.done():
                        return None
            return None
        finally:
            unsub()

    def _interrupt(self) -> None:
        with self._mu:
            w = self._watch
        if w is not None:
            w.close()
        self.changed.notify()

    def _read(self) -> str:
        self._resync.clear()
        with self._mu:
            offers = self._offers
        try:
            s = self.client.get()
        except errors.NotFoundError:
            with self._mu:
                if self._offers != offers and self._state.lease is not None and self._last_rv:
                    return self._last_rv  # an offered version is newer than the read
                self._absent()
            self.changed.notify()
            return ""  # watch from now: a create arrives as ADDED
        with self._mu:
            self._apply(s, s.resource_version)
        self.changed.notify()
        return s.resource_version

    def _follow_watches(self, stop: Context, rv: str) -> None:
        while not stop.done():
            w = self.client.watch(rv)
            with self._mu:
                self._watch = w
            if stop.done() or self._resync.is_set():
                w.close()
            self._set_err(None)
            try:
                rv = self._follow(w, rv)
            finally:
                w.close()
                with self._mu:
                    self._watch = None
            if self._resync.is_set():
                raise _Resync()

    def _follow(self, w: Watch, rv: str) -> str:
        for typ, obj in w:
            if typ in ("ADDED", "MODIFIED"):
                s = Snapshot.from_object(obj)
                rv = s.resource_version or rv
                with self._mu:
                    changed = self._apply(s, rv)
                if changed:
                    self.changed.notify()
            elif typ == "DELETED":
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                with self._mu:
                    self._last_rv = rv
                    self._absent()
                self.changed.notify()
            elif typ == "BOOKMARK":
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            elif typ == "ERROR":
                raise status_error("watch", self.client.namespace, self.client.name, obj)
        return rv


class ObserverThread:
    """Runs an Observer on a daemon thread until stop(); ``error`` is the
    permanent error that ended it, if any; ``failed`` is set then."""

    def __init__(self, obs: Observer, on_fail=None):
        self.obs = obs
        self._stop = Context()
        self.error: Optional[errors.APIError] = None
        self._on_fail = on_fail
        self._t = threading.Thread(target=self._run, name=f"leasehold-watch-{obs.client.name}", daemon=True)

    def start(self) -> "ObserverThread":
        self._t.start()
        return self

    def _run(self) -> None:
        try:
            err = self.obs.run(self._stop)
        except Exception as e:  # noqa: BLE001 - a bug must not go unnoticed
            log.exception("leasehold: observer of %s failed", self.obs.client.name)
            err = errors.APIError("watch", self.obs.client.namespace, self.obs.client.name, 0, repr(e))
        if err is not None:
            self.error = err
            self.obs._set_err(err)
            if self._on_fail is not None:
                self._on_fail(err)

    def stop(self, timeout: Optional[float] = None) -> None:
        self._stop.cancel()
        self._t.join(timeout)


def wait_state(obs: Observer, gen: int, stop: Optional[Context], timeout: Optional[float]) -> Tuple[bool, bool]:
    """Waits for a change after generation gen, timeout seconds of obs's
    clock, or the end of stop. Returns (changed, timed_out)."""
    real = None if timeout is None else obs.clock.real(max(timeout, 0.0))
    unsub = stop._subscribe(obs.changed.notify) if stop is not None else None
    try:
        changed = obs.changed.wait(gen, real)
    finally:
        if unsub:
            unsub()
    return changed, (not changed and timeout is not None)
