"""Python candidates with Go Leasehold and client-go candidates on one Lease,
against a real kube-apiserver: no two leaders at once (on CLOCK_MONOTONIC,
shared by all processes), tokens that only grow, takeover after a release
and after a crash, planned handoff both ways, and followers that watch
instead of polling."""

import os
import itertools
import signal
import subprocess
import time

import pytest

import leasehold
from leasehold.client import LeaseClient

from conftest import WAIT, eventually

pytestmark = pytest.mark.apiserver

# client-go dates changes from its record's JSON, whose times have whole
# seconds: keep lease_duration - renew_deadline above a second with it.
CLIENT_GO = ["--lease-duration", "4s", "--renew-deadline", "2s", "--retry-period", "300ms"]


def started(fleet, ident, n=1):
    return fleet.wait_event(f"{ident} to lead", ev="start", id=ident) if n == 1 else \
        eventually(lambda: len(fleet.where(ev="start", id=ident)) >= n, f"{ident} to lead {n} times")


def term_count(fleet, ident):
    return len(fleet.where(ev="start", id=ident))


def test_release_takeover_go_and_python(fleet):
    go = fleet.start("go", impl="leasehold")
    started(fleet, "go")
    py = fleet.start("py")
    fleet.wait_event("py ready", ev="ready", id="py")
    go.signal(signal.SIGTERM)  # releases: py takes over at once
    assert go.wait() == 0, go.err()
    started(fleet, "py")
    go2 = fleet.start("go2", impl="leasehold")
    fleet.wait_event("go2 ready", ev="ready", id="go2")
    py.signal(signal.SIGTERM)
    assert py.wait() == 0, py.err()
    started(fleet, "go2")
    ts = fleet.check()
    assert [t["id"] for t in ts] == ["go", "py", "go2"], fleet.dump()
    assert all(t["impl"] in ("leasehold", "leasehold-python") for t in ts)
    assert "released" in ts[1]["cause"] or "stopped" in ts[1]["cause"], ts[1]


def test_release_waits_for_the_work(fleet):
    """A work function that takes a second to stop after its context ended:
    the lease is released only after it returned, so the follower's term
    starts after it."""
    py = fleet.start("py", extra=["--ignore-cancel", "1s"])
    started(fleet, "py")
    fleet.start("go", impl="leasehold")
    fleet.wait_event("go ready", ev="ready", id="go")
    py.signal(signal.SIGTERM)
    assert py.wait() == 0, py.err()
    started(fleet, "go")
    ts = fleet.check()
    assert [t["id"] for t in ts] == ["py", "go"] and "ignored it" in ts[0]["cause"], fleet.dump()


def test_crash_takeover_go_and_python(fleet):
    py = fleet.start("py")
    started(fleet, "py")
    go = fleet.start("go", impl="leasehold")
    fleet.wait_event("go ready", ev="ready", id="go")
    py.signal(signal.SIGKILL)  # no release: go takes over once the lease expires in its view
    py.wait()
    started(fleet, "go")
    py2 = fleet.start("py2")
    fleet.wait_event("py2 ready", ev="ready", id="py2")
    go.signal(signal.SIGKILL)
    go.wait()
    started(fleet, "py2")
    ts = fleet.check()
    # A member may end a term at its deadline on a loaded machine and retake
    # its own lease at once: consecutive terms of one member are one turn.
    turns = [k for k, _ in itertools.groupby(t["id"] for t in ts)]
    assert turns == ["py", "go", "py2"], fleet.dump()


def test_client_go_and_python_take_turns(fleet):
    cg = fleet.start("cg", impl="client-go", flags=CLIENT_GO)
    started(fleet, "cg")
    py = fleet.start("py", flags=CLIENT_GO)
    fleet.wait_event("py ready", ev="ready", id="py")
    cg.signal(signal.SIGTERM)  # client-go releases on cancel
    cg.wait()
    started(fleet, "py")
    cg2 = fleet.start("cg2", impl="client-go", flags=CLIENT_GO)
    fleet.wait_event("cg2 ready", ev="ready", id="cg2")
    py.signal(signal.SIGKILL)  # a crash: client-go takes over after expiry
    py.wait()
    started(fleet, "cg2")
    py2 = fleet.start("py2", flags=CLIENT_GO)
    fleet.wait_event("py2 ready", ev="ready", id="py2")
    cg2.signal(signal.SIGTERM)
    cg2.wait()
    started(fleet, "py2")
    ts = fleet.check()
    assert [t["id"] for t in ts] == ["cg", "py", "cg2", "py2"], fleet.dump()


def test_handoff_both_ways(fleet, api):
    go = fleet.start("go", impl="leasehold")
    started(fleet, "go")
    py = fleet.start("py")
    fleet.wait_event("py ready", ev="ready", id="py")
    client = LeaseClient(api, "default", fleet.lease)
    # Python asks the Go leader to hand over.
    leasehold.request_handoff(client, "py")
    started(fleet, "py")
    stop = fleet.wait_event("go's term to end", ev="stop", id="go")
    assert "preferred" in stop["cause"], stop
    # The Go CLI asks the Python leader to hand back.
    bin_ = os.environ.get("LEASEHOLD_BIN")
    if bin_:
        out = subprocess.run([bin_, "--kubeconfig", fleet.kubeconfig, "handoff", fleet.lease, "--to", "go"],
                             capture_output=True, text=True, timeout=WAIT)
        assert out.returncode == 0, out.stderr
    else:
        leasehold.request_handoff(client, "go")
    started(fleet, "go", n=2)
    stop = eventually(lambda: fleet.where(ev="stop", id="py"), "py's term to end")[-1]
    assert "handoff" in stop["cause"], stop
    ts = fleet.check()
    assert [t["id"] for t in ts] == ["go", "py", "go"], fleet.dump()
    assert client.get().record.holder == "go"


def test_python_lock_and_go_lock_take_turns(fleet):
    hold = ["--hold", "400ms"]
    fleet.start("py", impl="python-lock", extra=hold)
    fleet.start("go", impl="lock", extra=hold)
    eventually(lambda: term_count(fleet, "py") >= 3 and term_count(fleet, "go") >= 3, "both to hold the lock 3 times")
    fleet.close()
    fleet.check()


def test_mixed_fleet_handoffs_and_crashes(fleet, api):
    """Two Python and two Go electors: the leader is released (SIGTERM),
    crashed (SIGKILL, then restarted) or asked to hand over to a chosen
    member, round after round; no two terms ever overlap."""
    ids = {"p1": "python", "p2": "python", "g1": "leasehold", "g2": "leasehold"}
    for i, impl in ids.items():
        fleet.start(i, impl=impl)
    client = LeaseClient(api, "default", fleet.lease)
    rounds = [("handoff", "p1"), ("kill", signal.SIGTERM), ("handoff", "g1"), ("kill", signal.SIGKILL),
              ("handoff", "p2"), ("kill", signal.SIGKILL), ("handoff", "g2"), ("kill", signal.SIGTERM),
              ("handoff", "p1")]
    for what, arg in rounds:
        eventually(lambda: all(fleet.procs[i].p.poll() is None and ready_since_start(fleet, i) for i in ids),
                   "every member to be up")
        leader = eventually(fleet.leader, "one leader")
        n = len(fleet.where(ev="start"))
        if what == "handoff":
            if arg == leader:
                continue
            leasehold.request_handoff(client, arg)
            eventually(lambda: fleet.leader() == arg, f"{arg} to take over")
            continue
        fleet.procs[leader].signal(arg)
        fleet.procs[leader].wait()
        fleet.start(leader, impl=ids[leader])  # the replica comes back
        eventually(lambda: len(fleet.where(ev="start")) > n, "a new term")
    ts = fleet.check()
    assert {t["impl"] for t in ts} == {"leasehold", "leasehold-python"}, fleet.dump()


def ready_since_start(fleet, ident):
    """Whether the current process of ident has reported ready."""
    with fleet.mu:
        evs = [ev["ev"] for ev in fleet.events if ev.get("id") == ident and ev["ev"] in ("ready", "exited")]
    return bool(evs) and evs[-1] == "ready"


def test_follower_watches_without_polling(fleet):
    fleet.start("go", impl="leasehold")
    started(fleet, "go")
    py = fleet.start("py")
    fleet.wait_event("py ready", ev="ready", id="py")
    time.sleep(3)  # not a speed check: long enough for ~10 renewals by the leader
    py.signal(signal.SIGUSR1)
    req = fleet.wait_event("py's request counts", ev="requests", id="py")["requests"]
    fleet.check()  # the follower did not take over while the leader renewed
    assert fleet.leader() == "go"
    assert req["update"] == 0 and req["create"] == 0, req
    assert req["get"] <= 1 and req["watch"] <= 2, req  # one read, one watch
