"""The holding algorithm shared by Elector and Lock: Candidate acquires a
Lease when it is released or has expired in this process's view; Term renews
it and ends its context before anyone else may take it.

Invariants (the numbers are cited where the code keeps them):

1. Expiry is judged only from the local monotonic time at which this process
   last saw the record change, plus the record's own leaseDurationSeconds.
   Timestamps written by other clocks are never compared with ours.
2. Every write is conditional on the resourceVersion it was based on (PUT
   with metadata.resourceVersion); a 409 means "re-read", never failure.
3. The hard deadline is counted from when the last successful renewal was
   *sent*: the term's context ends at sent + renew_deadline, from the term's
   own watchdog thread, whatever the renewing thread is doing. A follower
   counts lease_duration from when it *saw* that renewal, which is later,
   and renew_deadline < lease_duration, so the context ends first.
4. A term's token is the resourceVersion its acquiring write replaced, so
   tokens only grow (etcd's revision is cluster-wide).
5. A lease is released only by its own term, after the guarded work
   returned, and only while the record still shows that term.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, List, Optional

from . import errors
from .clock import Clock
from .config import Timing
from .context import Context
from .observer import Observer, State, wait_state
from .record import Record, Snapshot, compare_resource_versions, token_from_resource_version

log = logging.getLogger("leasehold")


class Held(Exception):
    """Internal: the lease is validly held by someone else (try_acquire)."""

    def __init__(self, holder: str, expires_in: float, preferred_for: str):
        super().__init__(holder)
        self.holder, self.expires_in, self.preferred_for = holder, expires_in, preferred_for


class _Spare:
    """A thread started before it is needed, that runs one function once
    given it (run) or ends without running anything (discard). A term's
    watchdog and renewer run on spares started while the candidate waited
    for the lease, so that no thread is created between the acquiring
    write and the work: Thread.start waits until the new thread runs, which
    on a busy machine can take the scheduler tens of milliseconds."""

    def __init__(self, name: str):
        self._go = threading.Event()
        self._fn: Optional[Callable[[], None]] = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self._go.wait()
        if self._fn is not None:
            self._fn()

    def run(self, fn: Callable[[], None]) -> threading.Thread:
        """Runs fn on the thread and returns the thread (join it)."""
        self._fn = fn
        self._go.set()
        return self.thread

    def discard(self) -> None:
        """Ends the thread without running anything and joins it."""
        self._go.set()
        self.thread.join()


class Candidate:
    """Acquires one Lease for one identity, driven by an Observer: waits on the
    watch for the lease to be released or to expire in its own view, then
    tries one conditional update. Never polls while the lease is validly held
    by someone else. Safe for concurrent use; holds one term at a time."""

    def __init__(self, obs: Observer, identity: str, timing: Timing, clock: Clock, preemptible: bool = True):
        self.obs, self.identity, self.timing, self.clock = obs, identity, timing, clock
        self.preemptible = preemptible
        self._mu = threading.Lock()
        self._own_rv = ""  # the version we last wrote as holder: we may take it back at once
        self._spares: List[_Spare] = []  # the next term's threads, started while acquire waits
        self.conflicts = 0

    def set_own(self, rv: str) -> None:
        with self._mu:
            self._own_rv = rv

    def _take_spares(self) -> List[_Spare]:
        """The threads of a new term: the spares started by acquire, or new
        ones (try_acquire)."""
        with self._mu:
            spares, self._spares = self._spares, []
        if not spares:
            name = self.obs.client.name
            spares = [_Spare(f"leasehold-deadline-{name}"), _Spare(f"leasehold-renew-{name}")]
        return spares

    def _discard_spares(self) -> None:
        with self._mu:
            spares, self._spares = self._spares, []
        for sp in spares:
            sp.discard()

    def wait_for(self, st: State, now: float) -> float:
        """Seconds to wait before the lease may be taken in this process's
        view, 0 if now."""
        if st.lease is None:
            return 0.0
        rec = st.lease.record
        if not rec.held:
            if rec.preferred_holder and rec.preferred_holder != self.identity:
                # Planned handoff: leave the preferred candidate a head start
                # (the lease is free, so a short one is safe) before competing.
                return max(0.0, st.observed_at + self.reservation() - now)
            return 0.0
        if rec.holder != self.identity and st.lease.offered_to == self.identity:
            # The holder (Go or Python) offers us the lease (planned handoff): its work
            # has stopped, and it resumes only after a write of its own
            # replaces this version, so a conditional write on it is safe.
            return 0.0
        if rec.holder == self.identity:
            with self._mu:
                if self._own_rv == st.lease.resource_version:
                    return 0.0  # our own last write: our previous term ended here
        d = rec.lease_duration if rec.lease_duration > 0 else self.timing.lease_duration
        return max(0.0, st.observed_at + d - now)  # invariant 1

    def reservation(self) -> float:
        """How long a released lease stays reserved for its preferred holder
        in this candidate's view: two retry periods, at most the lease
        duration (as Go Leasehold). A preferred candidate that is not there
        (a typo, a crash) holds the others back no longer than that."""
        return min(2 * self.timing.retry_period, self.timing.lease_duration)

    def acquire(self, stop: Context, deadline: Optional[float] = None) -> Optional["Term"]:
        """Blocks until this candidate holds the lease and returns the Term;
        None when stop ends or the clock passes deadline (monotonic). Raises
        a permanent APIError (forbidden, unauthorized, invalid); transient
        errors are retried every retry_period."""
        spares = self._take_spares()
        with self._mu:
            self._spares = spares
        try:
            return self._acquire(stop, deadline)
        finally:
            self._discard_spares()  # none left when a term took them

    def _acquire(self, stop: Context, deadline: Optional[float]) -> Optional["Term"]:
        raced, raced_rv = False, ""
        while True:
            st, gen = self.obs.current()
            if stop.done():
                return None
            if st.err is not None and st.err.permanent:
                raise st.err
            wait: Optional[float] = None  # None: until the state changes
            if st.synced:
                if raced and st.resource_version == raced_rv:
                    # We lost a race on this version; the winner's write is on
                    # its way through the watch. Re-read if it does not come.
                    wait = self.timing.retry_period
                else:
                    raced = False
                    d = self.wait_for(st, self.clock.now())
                    if d > 0:
                        wait = d
                    else:
                        try:
                            return self._attempt(st)
                        except (errors.ConflictError, errors.AlreadyExistsError):  # invariant 2
                            self.conflicts += 1
                            raced, raced_rv = True, st.resource_version
                            continue
                        except errors.APIError as e:
                            if stop.done():
                                return None
                            if e.permanent:
                                raise
                            log.debug("acquisition attempt on %s failed, will retry: %s", self.obs.client.name, e)
                            wait = self.timing.retry_period
            if deadline is not None:
                left = deadline - self.clock.now()
                if left <= 0:
                    return None
                wait = left if wait is None else min(wait, left)
            _, timed_out = wait_state(self.obs, gen, stop, wait)
            if timed_out and raced and self.obs.state().resource_version == raced_rv:
                self.obs.resync()
                raced = False

    def try_acquire(self, stop: Context) -> "Term":
        """At most one attempt. Raises Held (internal) when someone else
        validly holds the lease, without writing anything."""
        st, gen = self.obs.current()
        while not st.synced:
            if st.err is not None:
                raise st.err
            if stop.done():
                raise stop.cause  # type: ignore[misc]
            wait_state(self.obs, gen, stop, None)
            st, gen = self.obs.current()
        now = self.clock.now()
        d = self.wait_for(st, now)
        if d > 0:
            rec = st.lease.record if st.lease else Record()
            raise Held(rec.holder, d, "" if rec.held else rec.preferred_holder)
        return self._attempt(st)

    def _attempt(self, st: State) -> "Term":
        """One conditional write taking the lease (two when the Lease does not
        exist: it is created released first, so that every term's token is
        the version its acquisition replaced)."""
        client, t = self.obs.client, self.timing
        base = st.lease
        if base is None:
            base = client.create(Record().released(self.clock.wall()), timeout=t.renew_deadline)
            self.obs.offer(base)
        try:
            token = token_from_resource_version(base.resource_version)  # invariant 4
        except ValueError as e:
            raise errors.InvalidError("update", client.namespace, client.name, 0, str(e)) from None
        sent, wall = self.clock.now(), self.clock.wall()
        rec = Record(holder=self.identity, lease_duration=t.lease_duration, acquire_time=wall, renew_time=wall,
                     transitions=base.record.transitions + 1, strategy=base.record.strategy)
        snap = client.update(base, rec, token, timeout=t.renew_deadline)
        self.set_own(snap.resource_version)
        self.obs.offer(snap)
        return Term(self, snap, token, sent, self._take_spares())


@dataclasses.dataclass
class _Renewal:
    snap: Optional[Snapshot] = None
    sent: float = 0.0
    lost: bool = False
    err: Optional[errors.APIError] = None


class Term:
    """One acquisition of a lease, from the write that took it to its release,
    loss or deadline. Renews in the background (one thread) and enforces the
    hard deadline from another (the watchdog), until release() or abandon().
    ``ctx`` ends strictly before another process could see the lease expire.
    The two threads are ``spares`` started beforehand when given (see
    _Spare). Safe for concurrent use."""

    def __init__(self, cand: Candidate, snap: Snapshot, token: int, sent: float,
                 spares: Optional[List[_Spare]] = None):
        self.cand, self.token, self.transitions = cand, token, snap.record.transitions
        self.ctx = Context(token=token)
        self._mu = threading.Lock()
        self._snap = snap
        self._last_renew = sent
        self._deadline = sent + cand.timing.renew_deadline  # invariant 3
        self._end: Optional[str] = None  # "lost", "deadline" or "halted": no more renewals
        self._lost = False
        self._offer_to = ""  # set by offer(): every later renewal offers the lease
        self._stop = threading.Event()
        self._wake = threading.Event()  # renew now (an offer, or halt)
        if not spares:
            name = cand.obs.client.name
            spares = [_Spare(f"leasehold-deadline-{name}"), _Spare(f"leasehold-renew-{name}")]
        self._threads = [spares[0].run(self._watchdog), spares[1].run(self._renewer)]

    @property
    def deadline(self) -> float:
        """Monotonic time at which ctx ends unless a renewal succeeds first."""
        with self._mu:
            return self._deadline

    @property
    def last_renew(self) -> float:
        """Monotonic time at which the last successful renewal was sent."""
        with self._mu:
            return self._last_renew

    def snapshot(self) -> Snapshot:
        with self._mu:
            return self._snap

    def _ours(self, s: Optional[Snapshot]) -> bool:
        return s is not None and s.record.holder == self.cand.identity and s.record.transitions == self.transitions

    def _finish(self, reason: str, cause: Optional[BaseException]) -> None:
        """Must hold _mu. Ends renewing and, with a cause, the context."""
        if self._end is None:
            self._end = reason
        if reason == "lost":
            self._lost = True
        if cause is not None:
            self.ctx.cancel(cause)

    # -- the watchdog: loss, preemption and the hard deadline --------------------

    def _watchdog(self) -> None:
        obs, clock = self.cand.obs, self.cand.clock
        while True:
            st, gen = obs.current()
            with self._mu:
                if self._end is not None:
                    return
                if self._check_observed(st):
                    return
                left = self._deadline - clock.now()
                if left <= 0:
                    self._finish("deadline", errors.RenewDeadlineExceeded())  # invariant 3
                    return
            wait_state(obs, gen, None, left)

    def _check_observed(self, st: State) -> bool:
        """Must hold _mu. A newer version held by someone else ends the term;
        a newer version still ours becomes the base of the next renewal; a
        preferred holder other than us preempts (the lease is still renewed
        until release). Reports whether the term is over."""
        cur = self._snap
        if st.synced:
            newer = st.lease is None or (compare_resource_versions(st.lease.resource_version, cur.resource_version) or 0) > 0
            if newer and not self._ours(st.lease):
                self._finish("lost", errors.LeaseLost())
                return True
            if newer:
                self._snap = cur = st.lease
        p = cur.record.preferred_holder
        if p and p != self.cand.identity and self.cand.preemptible:
            self.ctx.cancel(errors.HandoffRequested(p))
        return False

    # -- the renewer --------------------------------------------------------------

    def _renewer(self) -> None:
        clock, t = self.cand.clock, self.cand.timing
        next_at = self.last_renew + t.retry_period
        while True:
            with self._mu:
                if self._end is not None:
                    return
                base, deadline = self._snap, self._deadline
            wait = next_at - clock.now()
            if wait > 0:
                self._wake.wait(clock.real(wait))
                if self._wake.is_set():
                    self._wake.clear()
                    with self._mu:
                        if self._offer_to and not base.offered_to:
                            next_at = clock.now()  # offer at once
                continue
            if deadline - clock.now() <= 0:
                return  # the watchdog ends the term
            res = self._renew(base, deadline)
            now = clock.now()
            with self._mu:
                if self._end is not None:
                    return
                if res.lost:
                    self._finish("lost", errors.LeaseLost())
                    return
                if res.err is not None or res.snap is None:
                    log.debug("renewal of %s failed, will retry: %s", self.cand.obs.client.name, res.err)
                    next_at = now + t.retry_period
                    continue
                if now >= self._deadline:
                    self._finish("deadline", errors.RenewDeadlineExceeded())
                    return
                if (compare_resource_versions(res.snap.resource_version, self._snap.resource_version) or 0) > 0:
                    self._snap = res.snap  # (the watchdog may have adopted a newer version already)
                self._last_renew = res.sent
                self._deadline = res.sent + t.renew_deadline  # invariant 3: from when it was sent
                next_at = res.sent + t.retry_period
            self.cand.set_own(res.snap.resource_version)
            self.cand.obs.offer(res.snap)

    def _renew(self, base: Snapshot, deadline: float) -> _Renewal:
        """One renewal: a conditional update of the version last seen; on
        conflict one re-read, and one more update if the lease is still ours.
        No request waits past the hard deadline."""
        clock, t, client = self.cand.clock, self.cand.timing, self.cand.obs.client

        def write(b: Snapshot) -> _Renewal:
            with self._mu:
                offer_to = self._offer_to
            if offer_to:
                b = b.with_offer(offer_to)
            sent, wall = clock.now(), clock.wall()
            rec = dataclasses.replace(b.record, holder=self.cand.identity, lease_duration=t.lease_duration,
                                      renew_time=wall)
            s = client.update(b, rec, self.token, timeout=clock.real(deadline - sent))
            return _Renewal(snap=s, sent=sent)

        try:
            try:
                return write(base)
            except errors.ConflictError as e:  # invariant 2
                try:
                    fresh = client.get(timeout=clock.real(max(deadline - clock.now(), 0.001)))
                except errors.NotFoundError:
                    return _Renewal(lost=True, err=e)
                if not self._ours(fresh):
                    self.cand.obs.offer(fresh)
                    return _Renewal(lost=True, err=e)
                if deadline - clock.now() <= 0:
                    return _Renewal(err=e)
                return write(fresh)
        except errors.APIError as e:
            return _Renewal(err=e)

    # -- ending --------------------------------------------------------------------

    def offer(self, to: str, within: float) -> bool:
        """Hands the lease to ``to`` while keeping it: the next renewal (at
        once) and every later one offer it (annotation
        leasehold.io/handoff-offer), and ``to`` takes it by a conditional
        write. Call only after the work under this term has stopped. Returns
        True once someone has taken the lease, False when nobody did within
        ``within`` seconds; the term is then halted with the lease still ours
        at our last write, which the candidate retakes at once under a new
        term (that write ends the offer)."""
        with self._mu:
            self._offer_to = to
        self._wake.set()
        until = self.cand.clock.now() + within
        obs = self.cand.obs
        while True:
            st, gen = obs.current()
            with self._mu:
                if self._end is not None:
                    break
            left = until - self.cand.clock.now()
            if left <= 0:
                break
            wait_state(obs, gen, None, left)
        self._halt()
        with self._mu:
            return self._lost

    def _halt(self, join: bool = True) -> None:
        """Ends renewing: no renewal starts after it. With join, waits for
        the term's threads to end."""
        with self._mu:
            self._finish("halted", None)
        self._stop.set()
        self._wake.set()
        self.cand.obs.changed.notify()
        if join:
            self._join()

    def _join(self) -> None:
        for th in self._threads:
            if th is not threading.current_thread():
                th.join()

    def abandon(self) -> None:
        """Stops renewing without releasing: others take the lease once it
        expires in their view."""
        self._halt()
        self.ctx.cancel(errors.LeaseReleased())

    def release(self, timeout: Optional[float] = None) -> None:
        """Ends the term and gives the lease up (holder "", duration 1s,
        transitions kept) so that a waiting candidate takes over at once.
        Call it only after the guarded work has stopped (invariant 5). Writes
        nothing if the lease is no longer ours. Idempotent. Raises APIError
        if the release could not be written (the lease then expires).
        The term's threads are joined after the release is written, not
        before: a renewal still in flight then only makes one of the two
        writes conflict, and a conflicting release re-reads (invariant 2)."""
        self._halt(join=False)
        self.ctx.cancel(errors.LeaseReleased())
        try:
            self._write_release(timeout)
        finally:
            self._join()

    def _write_release(self, timeout: Optional[float]) -> None:
        with self._mu:
            lost, base = self._lost, self._snap
        if lost or not self._ours(base):
            return
        client, clock = self.cand.obs.client, self.cand.clock
        timeout = timeout if timeout is not None else self.cand.timing.renew_deadline
        try:
            snap = client.update(base, base.record.released(clock.wall()), 0, timeout=timeout)
        except errors.ConflictError:  # invariant 2
            try:
                fresh = client.get(timeout=timeout)
            except errors.NotFoundError:
                return
            if not self._ours(fresh):
                return
            snap = client.update(fresh, fresh.record.released(clock.wall()), 0, timeout=timeout)
        with self._mu:
            self._snap, self._lost = snap, True
        self.cand.set_own("")
        self.cand.obs.offer(snap)
