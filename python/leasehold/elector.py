"""Elector: watch-driven leader election on one Lease, wire-compatible with
client-go's leaderelection and with Go Leasehold (they can share a Lease)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Optional

from . import errors
from .client import LeaseClient, RequestCounts
from .clock import Clock
from .config import Seconds, Timing, check, validate_identity, validate_ref
from .context import Context
from .holder import Candidate, Term
from .observer import Observer, ObserverThread, wait_state
from .record import Snapshot

log = logging.getLogger("leasehold")


@dataclasses.dataclass(frozen=True)
class Leader:
    """Who leads, as this candidate sees it.

    ``holder`` is "" when released or absent; ``token`` the holder's fencing
    token when it is a Leasehold process (0 otherwise), for this process the
    token of its term; ``expires_in`` the seconds until the lease expires in
    this process's view if not renewed (None when not held); ``is_me`` is
    True while this process's work runs under a valid term."""

    holder: str = ""
    token: int = 0
    transitions: int = 0
    expires_in: Optional[float] = None
    is_me: bool = False
    synced: bool = False


class Elector:
    """Campaigns for the Lease ``namespace/name`` and runs work only while it
    leads.

    ``Elector(api, namespace, name)`` where api is a
    ``kubernetes.client.ApiClient`` (None: in-cluster config, else the
    kubeconfig). ``identity`` defaults to $POD_NAME, else the hostname, and
    must be unique among candidates. Timing (seconds or timedelta), with
    client-go's meanings and defaults:

    * ``lease_duration`` (15): how long followers wait after they last saw the
      lease change before taking it: the crash-failover time. Whole seconds.
      Written to the Lease with every write.
    * ``renew_deadline`` (10): the leader's work context ends this long after
      the last successful renewal was *sent*, from its own timer. Less than
      lease_duration; the fastest clock must run less than
      lease_duration/renew_deadline times as fast as the slowest.
    * ``retry_period`` (2): interval between the leader's renewals (one write
      each) and between retries after transient errors. Followers do not poll.

    ``release_on_stop`` (True) releases the lease when run is stopped, after
    the work returned, so a follower takes over at once; False leaves it to
    expire. Invalid arguments raise ConfigError naming every problem. No API
    call is made before run.

    How it behaves (the same as the Go library, see docs/python.md):

    * Followers **watch** the one Lease (field selector metadata.name,
      resumed from the last resourceVersion, re-listed after 410): no
      requests in steady state beyond the open watch. They take the lease the
      moment it is released, or when it expires in their own view: the local
      monotonic time they last saw it change plus the record's own
      leaseDurationSeconds. Remote renewTime is never compared with the local
      clock.
    * The work's context ends at the hard deadline: renew_deadline after the
      last successful renewal was sent, strictly before any follower can
      take over (given the clock-rate bound above).
    * Fencing token: the resourceVersion the acquiring write replaced, an
      int that grows with every acquisition by any Leasehold candidate, also
      across a delete and re-create of the Lease. Restoring etcd from a
      backup rewinds it.
    * Conflicts (HTTP 409) are resolved only by resourceVersion: re-read and
      decide again; they are never fatal.

    Not guaranteed: a cancelled context does not stop work that ignores it,
    nor a process paused (SIGSTOP, a long GC, a C call holding the GIL, VM
    migration) between checking its context and acting. Guard external
    writes with the fencing token; resources that reject older tokens are
    safe even then.

    Safe for concurrent use; run may be active at most once at a time.
    """

    def __init__(self, api=None, namespace: str = "default", name: str = "", identity: Optional[str] = None, *,
                 lease_duration: Optional[Seconds] = None, renew_deadline: Optional[Seconds] = None,
                 retry_period: Optional[Seconds] = None, release_on_stop: bool = True,
                 clock: Optional[Clock] = None):
        problems: list = []
        validate_ref(namespace, name, problems)
        ident = validate_identity(identity, problems)
        self.timing = Timing.build(lease_duration, renew_deadline, retry_period, problems)
        check("Elector", problems)
        self.namespace, self.name, self.identity = namespace, name, ident
        self.release_on_stop = bool(release_on_stop)
        self.clock = clock or Clock()
        self.counts = RequestCounts()
        self._client = LeaseClient(api, namespace, name, self.counts)
        self._obs = Observer(self._client, self.clock, self.timing.retry_period)
        self._cand = Candidate(self._obs, ident, self.timing, self.clock)
        self._closed = Context()
        self._mu = threading.Lock()
        self._running = False
        self._run_thread = 0
        self._term: Optional[Term] = None
        self._wctx: Optional[Context] = None
        self._resigning: Optional[threading.Event] = None

    # -- running --------------------------------------------------------------

    def run(self, work: Callable[[Context], Any], stop: Optional[Context] = None) -> Any:
        """Campaigns for the lease and, each time it wins, calls
        ``work(ctx)`` on the calling thread with a leadership context:
        ``ctx.token`` is the term's fencing token (int); ``ctx.done()`` /
        ``ctx.wait(t)`` / ``ctx.check()`` tell when leadership ends — at the
        latest at the hard deadline — and ``ctx.cause`` why. run always waits
        for work to return before it releases the lease.

        After a loss (lost, renew deadline, planned handoff, release/resign)
        run releases the lease if it is still ours and campaigns again; an
        exception work raises after its term ended is logged and dropped.
        If work returns (or raises) while still leading, run releases the
        lease and returns work's value (or re-raises). When ``stop`` (a
        Context, see leasehold.stop_on_signals) or ``stop()`` ends it, run
        cancels the work, waits for it, releases (unless release_on_stop is
        False) and returns None. A permanent API error (forbidden: the
        message names the verb; unauthorized; invalid) is raised.
        """
        if not callable(work):
            raise TypeError(f"leasehold: Elector.run: work must be callable, got {work!r}")
        with self._mu:
            if self._running:
                raise RuntimeError("leasehold: Elector.run is already active on this Elector")
            self._running = True
            self._run_thread = threading.get_ident()
        campaign = Context(parents=[self._closed, stop])
        watcher = ObserverThread(self._obs, on_fail=campaign.cancel).start()
        try:
            while True:
                term = self._cand.acquire(campaign)
                if term is None:
                    cause = campaign.cause
                    if isinstance(cause, errors.APIError):
                        raise cause
                    return None
                done, result = self._lead(term, work, campaign)
                if done:
                    return result
        finally:
            campaign.cancel()
            campaign.detach()
            watcher.stop()
            with self._mu:
                self._running = False

    def _lead(self, term: Term, work: Callable[[Context], Any], campaign: Context):
        wctx = Context(parents=[term.ctx, campaign], token=term.token)
        with self._mu:
            self._term, self._wctx = term, wctx
        log.info("leasehold: %s became leader of %s/%s, token %d", self.identity, self.namespace, self.name, term.token)
        result, exc = None, None
        try:
            result = work(wctx)
        except BaseException as e:  # noqa: BLE001 - settled below, then re-raised
            exc = e
        finally:
            with self._mu:
                resigning, self._resigning = self._resigning, None
                self._term, self._wctx = None, None
            wctx.detach()
        cause = term.ctx.cause
        log.info("leasehold: %s stopped leading %s/%s (token %d): %s", self.identity, self.namespace, self.name,
                 term.token, "stopped" if campaign.done() else (cause or "work returned"))
        if campaign.done():
            if self.release_on_stop:
                self._settle(term, quiet=True)
            else:
                term.abandon()
            if resigning:
                resigning.set()
            if exc is not None and not isinstance(exc, errors.TermEnded):
                raise exc
            if isinstance(campaign.cause, errors.APIError):
                raise campaign.cause
            return True, None
        if isinstance(cause, errors.HandoffRequested) and resigning is None and exc is None:
            # Planned handoff: keep the lease and offer it; resume (the next
            # campaign retakes our own last write at once) if not taken.
            to = term.snapshot().record.preferred_holder
            if not term.offer(to, 2 * self.timing.retry_period):
                log.info("leasehold: %s did not take %s/%s within %.1fs; %s resumes", to, self.namespace,
                         self.name, 2 * self.timing.retry_period, self.identity)
            term.abandon()
            return False, None
        if cause is None and resigning is None:
            # The work returned (or raised) on its own while leading.
            self._settle(term, quiet=exc is not None)
            if exc is not None:
                raise exc
            return True, result
        self._settle(term, quiet=True)
        if exc is not None and not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit
        if exc is not None and not isinstance(exc, errors.TermEnded):
            log.warning("leasehold: work raised after its term ended (%s): %r", cause, exc)
        if resigning:
            resigning.set()
            self._stand_back(campaign)
        return False, None

    def _settle(self, term: Term, quiet: bool) -> None:
        try:
            term.release()
        except errors.APIError as e:
            if not quiet:
                raise
            log.warning("leasehold: release of %s/%s failed, it will expire: %s", self.namespace, self.name, e)

    def _stand_back(self, campaign: Context) -> None:
        """After a resignation: wait until another candidate leads or one lease
        duration passed, so as not to take the lease straight back."""
        until = self.clock.now() + self.timing.lease_duration
        while not campaign.done():
            st, gen = self._obs.current()
            if st.holder and st.holder != self.identity:
                return
            left = until - self.clock.now()
            if left <= 0:
                return
            wait_state(self._obs, gen, campaign, left)

    def stop(self) -> None:
        """Ends run for good: the work's context ends (cause Stopped), run
        waits for the work, releases and returns. Later runs return at once."""
        self._closed.cancel(errors.Stopped())

    # -- leadership ----------------------------------------------------------------

    def release(self, timeout: Optional[float] = None) -> bool:
        """Resigns: ends this candidate's leadership now (the work's context
        ends with cause Resigned), and once the work has returned releases the
        lease so a follower takes over at once. The candidate then stands back
        for one lease duration, or until another leads, before it campaigns
        again. Returns True when the release is done (at once if not
        leading: True), False if timeout seconds passed first. Called from
        the work function itself it returns False at once: the release
        follows when the work returns."""
        with self._mu:
            if self._term is None or self._wctx is None:
                return True
            if self._resigning is None:
                self._resigning = threading.Event()
            done = self._resigning
            self._wctx.cancel(errors.Resigned())
            if threading.get_ident() == self._run_thread:
                return False
        return done.wait(timeout)

    resign = release  # the Go library's name

    def handoff(self, to: str, timeout: Optional[float] = None) -> None:
        """Planned handoff: asks the current leader to hand the lease to the
        candidate ``to`` by naming it the preferred holder (in
        spec.preferredHolder and in the annotation
        leasehold.io/preferred-holder: "<transitions>/<to>", which every
        cluster keeps). The leader's work context ends (cause
        HandoffRequested); once the work returned it keeps the lease and
        offers it to ``to``, which takes over at once while other candidates
        keep waiting. If ``to`` does not take it within two retry periods,
        the leader resumes. While run is active, waits until ``to`` leads
        (raises LeaseholdError if the request lapsed or another took over,
        TimeoutError after timeout); otherwise returns once the request is
        written."""
        snap = request_handoff(self._client, to)
        if snap is None:
            return
        self._obs.offer(snap)
        with self._mu:
            running = self._running
        if not running:
            return
        prev = snap.record.holder
        until = None if timeout is None else self.clock.now() + timeout
        while True:
            st, gen = self._obs.current()
            if st.holder == to:
                return
            if st.holder and st.holder != prev:
                raise errors.LeaseholdError(
                    f"leasehold: handoff of lease {self.namespace}/{self.name} to {to!r}: {st.holder!r} took over instead")
            if st.holder and st.lease is not None and st.lease.record.transitions != snap.record.transitions:
                raise errors.LeaseholdError(
                    f"leasehold: handoff of lease {self.namespace}/{self.name} to {to!r}: not taken in time; "
                    f"{st.holder!r} resumed leading (is a candidate with identity {to!r} running?)")
            left = None if until is None else until - self.clock.now()
            if left is not None and left <= 0:
                raise TimeoutError(f"leasehold: handoff of lease {self.namespace}/{self.name} to {to!r}: "
                                   f"not taken over within {timeout}s (holder {st.holder!r})")
            wait_state(self._obs, gen, self._closed, left)

    def leader(self) -> Leader:
        """The latest view of who leads (follows the watch only while run is
        active). Never blocks on the network."""
        st = self._obs.state()
        with self._mu:
            term, wctx = self._term, self._wctx
        exp = st.expires_at()
        out = Leader(synced=st.synced, expires_in=None if exp is None else exp - self.clock.now())
        if st.lease is not None:
            r = st.lease.record
            out = dataclasses.replace(out, holder=r.holder, token=st.lease.token, transitions=r.transitions)
        if term is not None and wctx is not None and not wctx.done():
            out = dataclasses.replace(out, is_me=True, token=term.token)
        return out

    def is_leader(self) -> bool:
        """Whether this process leads now (its work runs under a valid term)."""
        return self.leader().is_me

    def requests(self) -> dict:
        """API requests made so far, by kind (get, create, update, watch)."""
        return self.counts.snapshot()


def request_handoff(client: LeaseClient, to: str, attempts: int = 10) -> Optional[Snapshot]:
    """Names ``to`` the preferred holder of the lease, retrying on conflicts.
    Returns the written snapshot, or None if ``to`` already holds it."""
    if not isinstance(to, str) or not to:
        raise errors.ConfigError("handoff", [f"target identity {to!r} must be a non-empty string"])
    for attempt in range(attempts + 1):
        s = client.get()
        if s.record.holder == to:
            return None
        rec = dataclasses.replace(s.record, preferred_holder=to)
        try:
            return client.update(s, rec, 0)
        except errors.ConflictError:
            if attempt == attempts:
                raise
            time.sleep(0.01 * (attempt + 1))
    return None
