"""Unit tests of the holding algorithm on an in-memory Lease API (fakes).
They check decisions and orderings, never how fast anything happened."""

import threading
import time

import pytest

import leasehold
from leasehold import errors
from leasehold.clock import Clock
from leasehold.config import Timing
from leasehold.context import Context
from leasehold.holder import Candidate
from leasehold.observer import Observer, ObserverThread, State
from leasehold.record import Record, Snapshot

from fakelease import FakeClient, FakeStore

TIMING = Timing(lease_duration=2, renew_deadline=1.0, retry_period=0.1)
WAIT = 20  # generous bound for things that must happen eventually


@pytest.fixture
def store():
    s = FakeStore()
    yield s
    s.unblocked.set()


def start(store, identity="me", timing=TIMING, preemptible=True):
    client = FakeClient(store)
    obs = Observer(client, Clock(), timing.retry_period)
    th = ObserverThread(obs).start()
    return client, Candidate(obs, identity, timing, Clock(), preemptible=preemptible), th


def eventually(cond, what):
    until = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_acquire_creates_released_then_takes_with_token(store):
    client, cand, th = start(store)
    term = cand.acquire(Context())
    try:
        created_rv = 101  # the create; the acquisition replaced it
        assert term.token == created_rv
        s = client.get()
        assert s.record.holder == "me" and s.record.lease_duration == 2 and s.record.transitions == 1
        assert s.obj["metadata"]["annotations"]["leasehold.io/token"] == f"{created_rv}/1/me"
        assert s.token == created_rv
    finally:
        term.release()
        th.stop()
    s = client.get()
    assert s.record.holder == "" and s.record.lease_duration == 1 and s.record.transitions == 1


def test_expiry_is_observed_time_plus_records_own_duration():
    cand = Candidate(None, "me", Timing(10, 5, 1), Clock())
    now = 1000.0
    rec = Record(holder="other", lease_duration=3, transitions=1)
    snap = Snapshot("n", "l", "u", "5", rec, 0, {})
    # The record's own duration (3 s), counted from when we saw the change;
    # renewTime (None here, or any value) plays no part.
    assert cand.wait_for(State(True, snap, observed_at=now - 1), now) == pytest.approx(2.0)
    assert cand.wait_for(State(True, snap, observed_at=now - 4), now) == 0
    released = Snapshot("n", "l", "u", "6", Record(lease_duration=1, preferred_holder="b"), 0, {})
    # Reserved for b for two retry periods (at most the lease duration).
    assert cand.wait_for(State(True, released, observed_at=now), now) == pytest.approx(2.0)
    assert Candidate(None, "me", Timing(2, 1, 1.5), Clock()).wait_for(State(True, released, observed_at=now), now) == 2
    b = Candidate(None, "b", Timing(10, 5, 1), Clock())
    assert b.wait_for(State(True, released, observed_at=now), now) == 0
    # A holder's planned handoff offers the held lease to b: b may take
    # it at once, anyone else waits for it to expire.
    offered = Snapshot("n", "l", "u", "7", rec, 0, {}, offered_to="b")
    assert b.wait_for(State(True, offered, observed_at=now), now) == 0
    assert cand.wait_for(State(True, offered, observed_at=now), now) == pytest.approx(3.0)


def test_hard_deadline_ends_context_while_a_renewal_hangs(store):
    client, cand, th = start(store)
    store.update_delay = 0.2  # each write takes a while to apply and answer
    term = cand.acquire(Context())
    try:
        eventually(lambda: len(store.applied) >= 3, "a few renewals")
        store.block_updates.set()  # from now on every renewal hangs, ignoring its timeout
        assert term.ctx.wait(WAIT), "the term's context never ended"
        ended = time.monotonic()
        assert isinstance(term.ctx.cause, errors.RenewDeadlineExceeded)
        # The deadline is counted from when the last successful renewal was
        # sent (before the server received it), not from its answer.
        received, answered = store.applied[-1]
        assert term.last_renew <= received < answered
        assert term.deadline == pytest.approx(term.last_renew + TIMING.renew_deadline)
        assert ended >= term.deadline  # not early
        # A follower dates the expiry from when it saw the last renewal, which
        # completed after it was sent: the context ended before that.
        assert term.deadline < term.last_renew + TIMING.lease_duration
    finally:
        store.unblocked.set()
        term.abandon()
        th.stop()


def test_renewal_conflict_is_resolved_by_reading(store):
    client, cand, th = start(store)
    term = cand.acquire(Context())
    try:
        for _ in range(5):  # foreign writes that keep our record (a label, say)
            client.put_raw(client.get().record, token=term.token)
            n = len(store.update_sent)
            eventually(lambda: len(store.update_sent) > n + 1, "renewals after a foreign write")
        assert not term.ctx.done(), term.ctx.cause
        assert client.get().record.holder == "me"
    finally:
        term.release()
        th.stop()


def test_release_while_a_renewal_is_in_flight(store):
    """release writes at once, without waiting for a renewal in flight;
    the conflict between the two is resolved by re-reading. The term's
    threads have ended when release returns."""
    client, cand, th = start(store)
    term = cand.acquire(Context())
    try:
        store.update_delay = 0.3
        sent, applied = len(store.update_sent), len(store.applied)
        eventually(lambda: len(store.update_sent) > sent, "a renewal in flight")
        term.release()
        assert not any(t.is_alive() for t in term._threads)
        s = client.get()
        assert s.record.holder == "" and s.record.transitions == term.transitions
        # Usually the renewal lands, the release conflicts with it and is
        # written again on the renewed version; if the release lands first,
        # the renewal conflicts. Either way both were sent, nothing waited.
        assert (len(store.update_sent), len(store.applied)) in ((sent + 3, applied + 2), (sent + 2, applied + 1))
    finally:
        store.update_delay = 0
        th.stop()


def test_another_holder_ends_the_term(store):
    client, cand, th = start(store)
    term = cand.acquire(Context())
    try:
        rec = client.get().record
        client.put_raw(Record(holder="other", lease_duration=2, transitions=rec.transitions + 1))
        assert term.ctx.wait(WAIT)
        assert isinstance(term.ctx.cause, errors.LeaseLost)
    finally:
        term.release()  # writes nothing: not ours
        th.stop()
    assert client.get().record.holder == "other"


def test_preferred_holder_preempts_but_keeps_renewing(store):
    client, cand, th = start(store)
    term = cand.acquire(Context())
    try:
        import dataclasses
        s = client.get()
        client.update(s, dataclasses.replace(s.record, preferred_holder="b"))
        assert term.ctx.wait(WAIT)
        assert isinstance(term.ctx.cause, errors.HandoffRequested) and term.ctx.cause.to == "b"
        n = len(store.update_sent)
        eventually(lambda: len(store.update_sent) > n + 2, "renewals while the work stops")
        assert client.get().record.holder == "me"
    finally:
        term.release()
        th.stop()
    s = client.get()
    assert s.record.holder == "" and s.record.preferred_holder == "b"
    assert s.obj["metadata"]["annotations"]["leasehold.io/preferred-holder"] == f"{s.record.transitions}/b"


def test_lock_holder_is_not_preempted(store):
    client, cand, th = start(store, preemptible=False)
    term = cand.acquire(Context())
    try:
        import dataclasses
        s = client.get()
        client.update(s, dataclasses.replace(s.record, preferred_holder="b"))
        n = len(store.update_sent)
        eventually(lambda: len(store.update_sent) > n + 2, "renewals")
        assert not term.ctx.done()
    finally:
        term.release()
        th.stop()


def test_follower_makes_no_requests_while_lease_is_held(store):
    leader_client, leader, lth = start(store, "leader")
    term = leader.acquire(Context())
    fclient, follower, fth = start(store, "follower")
    got = []
    t = threading.Thread(target=lambda: got.append(follower.acquire(stop)))
    stop = Context()
    t.start()
    try:
        eventually(lambda: len(store.update_sent) >= 10, "the leader to renew ten times")
        assert fclient.counts.snapshot() == {"get": 1, "create": 0, "update": 0, "watch": 1, "other": 0}
        term.release()  # the follower takes over at once
        t.join(WAIT)
        assert got and got[0] is not None and got[0].token > term.token
        got[0].release()
    finally:
        stop.cancel()
        t.join(WAIT)
        lth.stop()
        fth.stop()


def test_terms_threads_are_started_while_waiting_not_after_the_write(store):
    """A term's watchdog and renewer run on threads the candidate started
    while it waited for the lease; none is started between the acquiring
    write's answer and the term. Spares left by an acquire that ends
    without a term are joined."""
    leader_client, leader, lth = start(store, "leader")
    term = leader.acquire(Context())
    _, follower, fth = start(store, "follower")
    names = {f"leasehold-deadline-{leader_client.name}", f"leasehold-renew-{leader_client.name}"}

    def spares():
        return {t for t in threading.enumerate() if t.name in names and t not in term._threads}

    got, stop = [], Context()
    t = threading.Thread(target=lambda: got.append(follower.acquire(stop)))
    t.start()
    try:
        eventually(lambda: len(spares()) == 2, "the follower's spare threads")
        waiting = spares()
        term.release()
        t.join(WAIT)
        assert got and got[0] is not None
        assert set(got[0]._threads) == waiting  # the term runs on them
        assert all(th.is_alive() for th in waiting)
        got[0].release()
        assert not any(th.is_alive() for th in waiting)
        # An acquire that ends without a term leaves no thread behind.
        stop2 = Context()
        t2 = threading.Thread(target=lambda: follower.acquire(stop2, deadline=time.monotonic() + WAIT))
        term2 = leader.acquire(Context())
        t2.start()
        eventually(lambda: len([th for th in spares() if th not in term2._threads]) == 2, "spares of a waiting acquire")
        left = [th for th in spares() if th not in term2._threads]
        stop2.cancel()
        t2.join(WAIT)
        assert not any(th.is_alive() for th in left)
        term2.release()
    finally:
        stop.cancel()
        t.join(WAIT)
        lth.stop()
        fth.stop()


@pytest.fixture
def fake_elector(store, monkeypatch):
    import leasehold.elector as el
    monkeypatch.setattr(el, "LeaseClient", lambda api, ns, name, counts: FakeClient(store, ns, name))

    def make(identity, **kw):
        kw = dict(dict(lease_duration=2, renew_deadline=1, retry_period=0.1), **kw)
        return leasehold.Elector(object(), "default", "fake", identity, **kw)
    return make


def test_elector_runs_work_with_token_and_releases(store, fake_elector):
    e = fake_elector("a")
    seen = []

    def work(ctx):
        seen.append((ctx.token, e.is_leader(), e.leader().holder))
        return "done"

    assert e.run(work) == "done"
    assert seen == [(101, True, "a")]  # the version the acquisition replaced
    s = FakeClient(store).get()
    assert s.record.holder == "" and s.record.lease_duration == 1


def test_elector_work_exception_releases_then_propagates(store, fake_elector):
    e = fake_elector("a")

    def work(ctx):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        e.run(work)
    assert FakeClient(store).get().record.holder == ""


def test_elector_resign_then_campaign_again(store, fake_elector):
    e = fake_elector("a")
    tokens = []

    def work(ctx):
        tokens.append(ctx.token)
        if len(tokens) == 1:
            assert e.release() is False  # from the work itself: no waiting for itself
            assert ctx.wait(WAIT)
            assert isinstance(ctx.cause, leasehold.Resigned)
            return None
        return "second"

    assert e.run(work) == "second"
    assert len(tokens) == 2 and tokens[1] > tokens[0]


def test_elector_stop_ends_work_and_releases(store, fake_elector):
    e = fake_elector("a")
    stop = Context()

    def work(ctx):
        stop.cancel()
        assert ctx.wait(WAIT)
        assert isinstance(ctx.cause, leasehold.Stopped)

    assert e.run(work, stop=stop) is None
    assert FakeClient(store).get().record.holder == ""


def test_watch_resumes_from_last_version_and_relists_after_410(store):
    client, cand, th = start(store, "watcher")
    writer = FakeClient(store)
    writer.put_raw(Record(holder="x", lease_duration=2, transitions=1))
    try:
        eventually(lambda: cand.obs.state().holder == "x", "the first state")
        assert client.counts.snapshot()["get"] <= 1
        writer.put_raw(Record(holder="y", lease_duration=2, transitions=2))
        eventually(lambda: cand.obs.state().holder == "y", "the change through the watch")
        rv = cand.obs.state().resource_version
        gets = client.counts.snapshot()["get"]
        store.end_watches()  # the server closes the watch: resume, no re-read
        eventually(lambda: store.watch_rvs[-1] == rv and len(store.watch_rvs) >= 2, "a watch resumed from " + rv)
        assert client.counts.snapshot()["get"] == gets
        store.end_watches({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
        eventually(lambda: client.counts.snapshot()["get"] == gets + 1, "a re-read after 410")
        writer.put_raw(Record(holder="z", lease_duration=2, transitions=3))
        eventually(lambda: cand.obs.state().holder == "z", "changes after the re-read")
    finally:
        th.stop()
