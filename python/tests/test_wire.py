"""Unit tests of the wire format, validation and contexts (no apiserver)."""

import datetime as dt
import threading

import pytest

import leasehold
from leasehold import errors
from leasehold.config import Timing
from leasehold.record import (Record, Snapshot, format_microtime, parse_microtime, parse_preferred_annotation,
                              parse_token_annotation)

UTC = dt.timezone.utc


@pytest.mark.parametrize("t,want", [
    (dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05.000000Z"),  # whole seconds
    (dt.datetime(2025, 1, 2, 3, 4, 5, 7, tzinfo=UTC), "2025-01-02T03:04:05.000007Z"),
    (dt.datetime(2025, 1, 2, 4, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1))), "2025-01-02T03:04:05.123456Z"),
])
def test_microtime_format(t, want):
    assert format_microtime(t) == want
    assert parse_microtime(want) == t


def test_microtime_parse_forms():
    assert parse_microtime("2025-01-02T03:04:05Z") == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_microtime("2025-01-02T03:04:05.5Z").microsecond == 500000
    assert parse_microtime("2025-01-02T03:04:05.123456789Z").microsecond == 123456
    assert parse_microtime(None) is None
    with pytest.raises(ValueError):
        parse_microtime("yesterday")
    with pytest.raises(ValueError):
        format_microtime(dt.datetime(2025, 1, 2))  # naive


def test_to_spec_writes_client_go_fields():
    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    held = Record(holder="a", lease_duration=15, acquire_time=now, renew_time=now, transitions=3)
    assert held.to_spec() == {"holderIdentity": "a", "leaseDurationSeconds": 15,
                              "acquireTime": "2025-01-02T03:04:05.000000Z", "renewTime": "2025-01-02T03:04:05.000000Z",
                              "leaseTransitions": 3}
    rel = held.released(now).to_spec()
    assert rel["holderIdentity"] == "" and rel["leaseDurationSeconds"] == 1 and rel["leaseTransitions"] == 3
    assert Record.from_spec(held.to_spec()) == held


def test_annotations_are_tied_to_transitions():
    assert parse_token_annotation("42/3/a", 3, "a") == 42
    assert parse_token_annotation("42/3/ns/a", 3, "ns/a") == 42  # identities may contain '/'
    assert parse_token_annotation("42/3/a", 4, "a") == 0  # a later term (client-go took over)
    # kubectl apply changing only holderIdentity: never credit a's token to b
    assert parse_token_annotation("42/3/a", 3, "b") == 0
    assert parse_token_annotation("42/3", 3, "a") == 0
    assert parse_token_annotation("x/3/a", 3, "a") == 0
    assert parse_preferred_annotation("7/ns/pod-b", 7) == "ns/pod-b"  # identities may contain '/'
    assert parse_preferred_annotation("7/b", 8) == ""
    assert parse_preferred_annotation("e1/5/5", 5) == ""  # not "<transitions>/<identity>"


def test_snapshot_reads_annotations_and_keeps_metadata():
    now = dt.datetime(2025, 1, 2, tzinfo=UTC)
    obj = {"metadata": {"name": "l", "namespace": "n", "uid": "u", "resourceVersion": "9",
                        "labels": {"app": "x"},
                        "annotations": {"other": "keep", "leasehold.io/token": "8/2/a",
                                        "leasehold.io/preferred-holder": "2/b"}},
           "spec": Record(holder="a", lease_duration=15, acquire_time=now, renew_time=now, transitions=2).to_spec()}
    s = Snapshot.from_object(obj)
    assert s.token == 8 and s.record.preferred_holder == "b"
    out = s.object_with(Record(holder="c", lease_duration=15, acquire_time=now, renew_time=now, transitions=3), token=9)
    ann = out["metadata"]["annotations"]
    assert ann == {"other": "keep", "leasehold.io/token": "9/3/c"}  # the handoff request is done
    assert out["metadata"]["labels"] == {"app": "x"} and out["metadata"]["resourceVersion"] == "9"
    assert obj["metadata"]["annotations"]["leasehold.io/token"] == "8/2/a"  # not modified


def test_handoff_offer_is_read_at_its_term_and_dropped_by_the_next():
    """A Go holder's offer (leasehold.io/handoff-offer) names the target
    only at the transition count it was written at and while held; a
    renewal keeps it, a write that starts a new term or releases drops it."""
    now = dt.datetime(2025, 1, 2, tzinfo=UTC)
    held = Record(holder="a", lease_duration=15, acquire_time=now, renew_time=now, transitions=2)

    def snap(rec, offer):
        return Snapshot.from_object({"metadata": {"name": "l", "namespace": "n", "resourceVersion": "9",
                                                  "annotations": {"leasehold.io/handoff-offer": offer}},
                                     "spec": rec.to_spec()})
    assert snap(held, "2/ns/b").offered_to == "ns/b"
    assert snap(held, "1/b").offered_to == ""  # an earlier term's
    assert snap(held.released(now), "2/b").offered_to == ""  # not held: nothing to offer
    s = snap(held, "2/b")
    assert s.object_with(held, token=8)["metadata"]["annotations"]["leasehold.io/handoff-offer"] == "2/b"
    taken = s.object_with(Record(holder="b", lease_duration=15, acquire_time=now, renew_time=now, transitions=3), token=9)
    assert "leasehold.io/handoff-offer" not in taken["metadata"]["annotations"]
    assert "annotations" not in s.object_with(held.released(now))["metadata"]


def test_config_errors_name_every_problem():
    with pytest.raises(leasehold.ConfigError) as ei:
        leasehold.Elector(None, "Bad_NS", "no/slash", "", lease_duration=1.5, renew_deadline=2, retry_period=0)
    msg = str(ei.value)
    assert len(ei.value.problems) >= 4, ei.value.problems
    for part in ["namespace 'Bad_NS'", "name 'no/slash'", "identity ''", "lease_duration 1.5", "retry_period 0"]:
        assert part in msg, msg
    with pytest.raises(leasehold.ConfigError, match="renew_deadline 15.0s must be less than lease_duration 15s"):
        leasehold.Elector(None, "default", "x", "a", renew_deadline=15)
    with pytest.raises(leasehold.ConfigError, match="retry_period 3.0s must be less than renew_deadline 2.0s"):
        leasehold.Lock(None, "default", "x", "a", lease_duration=3, renew_deadline=2, retry_period=3)
    with pytest.raises(leasehold.ConfigError, match="must be a number of seconds"):
        leasehold.Elector(None, "default", "x", "a", lease_duration="15s")
    with pytest.raises(leasehold.ConfigError, match="is not a valid Lease name: at most 253"):
        leasehold.Elector(None, "default", "x" * 254, "a")
    assert Timing.build(dt.timedelta(seconds=4), 3, 1, []) == Timing(4, 3.0, 1.0)


def test_context_parents_and_causes():
    root = leasehold.Context()
    other = leasehold.Context()
    child = leasehold.Context(parents=[root, other], token=7)
    assert not child.done() and child.cause is None and child.token == 7
    assert child.wait(0.001) is False
    child.check()
    assert root.cancel(leasehold.LeaseLost())
    assert not root.cancel(leasehold.Stopped())  # the first cause wins
    assert child.done() and isinstance(child.cause, leasehold.LeaseLost)
    with pytest.raises(leasehold.LeaseLost):
        child.check()
    late = leasehold.Context(parents=[root])
    assert isinstance(late.cause, leasehold.LeaseLost)
    woke = []
    c = leasehold.Context()
    t = threading.Thread(target=lambda: woke.append(c.wait()))
    t.start()
    c.cancel()
    t.join()
    assert woke == [True] and isinstance(c.cause, leasehold.Stopped)


def test_errors_name_the_verb():
    e = errors.ForbiddenError("update", "ns", "l", 403, "denied")
    assert e.permanent and 'verb "update"' in str(e) and "ns/l" in str(e)
    assert not errors.ConflictError("update", "ns", "l", 409, "").permanent


def test_stop_on_signals_ends_the_context_then_restores_handlers():
    import os
    import signal
    seen = []
    prev = signal.signal(signal.SIGUSR2, lambda s, f: seen.append(s))
    try:
        ctx = leasehold.stop_on_signals([signal.SIGUSR2])
        os.kill(os.getpid(), signal.SIGUSR2)
        assert ctx.wait(10), "the context did not end"
        assert isinstance(ctx.cause, leasehold.SignalReceived) and ctx.cause.signum == signal.SIGUSR2
        assert isinstance(ctx.cause, leasehold.Stopped)
        assert seen == []
        os.kill(os.getpid(), signal.SIGUSR2)  # the second one reaches the previous handler
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, prev)


def test_watches_run_on_their_own_connection_pool():
    """A watch holds its HTTP/1.1 connection for minutes: it gets a pool of
    its own, made from the same configuration and default headers, so the
    connection of the last read or write stays ready for the next write."""
    kubernetes = pytest.importorskip("kubernetes")
    from leasehold.client import LeaseClient

    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(), cookie="c=1")
    api.set_default_header("X-Test", "yes")
    c = LeaseClient(api, "default", "l")
    reads, watches = c._api.api_client, c._watch_api.api_client
    assert reads is api and watches is not api
    assert watches.rest_client.pool_manager is not api.rest_client.pool_manager
    assert watches.configuration is api.configuration and watches.cookie == "c=1"
    assert watches.default_headers["X-Test"] == "yes"
    assert c._watch_api is c._watch_api  # made once
