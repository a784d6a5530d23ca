"""The library in-process against a real kube-apiserver: the exact wire
format, MicroTime, tokens across a delete and re-create, locks shared with
the Go CLI, work that ignores cancellation (fenced), and clear errors for
missing permissions and bad credentials."""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import leasehold
from leasehold.client import LeaseClient
from leasehold.record import Record

from conftest import WAIT, eventually, mono_ns, raw_lease

pytestmark = pytest.mark.apiserver

TIMING = dict(lease_duration=2, renew_deadline=1.5, retry_period=0.3)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Runner:
    """Elector.run on a thread; result or exception kept."""

    def __init__(self, elector, work, stop=None):
        self.e, self.result, self.exc = elector, None, None
        self.t = threading.Thread(target=self._run, args=(work, stop), daemon=True)
        self.t.start()

    def _run(self, work, stop):
        try:
            self.result = self.e.run(work, stop=stop)
        except BaseException as e:  # noqa: BLE001
            self.exc = e

    def join(self, timeout=WAIT):
        self.t.join(timeout)
        assert not self.t.is_alive(), "Elector.run did not return"
        return self


def test_wire_format_is_client_gos(api, lease_name):
    e = leasehold.Elector(api, "default", lease_name, "py-a", **TIMING)
    seen = {}

    def work(ctx):
        seen["lease"] = raw_lease(api, lease_name)
        seen["token"] = ctx.token
        ctx.wait(1.0)  # a few renewals
        seen["renewed"] = raw_lease(api, lease_name)

    assert e.run(work) is None
    spec = seen["lease"]["spec"]
    assert set(spec) == {"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions"}, spec
    assert spec["holderIdentity"] == "py-a" and spec["leaseDurationSeconds"] == 2 and spec["leaseTransitions"] == 1
    ann = seen["lease"]["metadata"]["annotations"]
    assert ann["leasehold.io/token"] == f"{seen['token']}/1/py-a"
    assert isinstance(seen["token"], int) and seen["token"] > 0
    r = seen["renewed"]["spec"]
    assert r["renewTime"] > spec["renewTime"] and r["acquireTime"] == spec["acquireTime"]
    assert r["leaseDurationSeconds"] == 2  # always written, also when renewing
    rel = raw_lease(api, lease_name)["spec"]
    assert rel["holderIdentity"] == "" and rel["leaseDurationSeconds"] == 1 and rel["leaseTransitions"] == 1


def test_microtime_whole_seconds_accepted(api, lease_name):
    c = LeaseClient(api, "default", lease_name)
    whole = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    s = c.create(Record(lease_duration=1, acquire_time=whole, renew_time=whole))
    assert raw_lease(api, lease_name)["spec"]["acquireTime"] == "2030-01-02T03:04:05.000000Z"
    micro = whole.replace(microsecond=1)
    s = c.update(s, Record(holder="x", lease_duration=3, acquire_time=whole, renew_time=micro, transitions=1), 5)
    assert s.record.renew_time == micro and s.record.acquire_time == whole and s.token == 5


def test_token_grows_across_delete_and_recreate(api, lease_name):
    import kubernetes
    tokens = []
    for _ in range(2):
        e = leasehold.Elector(api, "default", lease_name, "py-a", **TIMING)
        e.run(lambda ctx: tokens.append(ctx.token))
        kubernetes.client.CoordinationV1Api(api).delete_namespaced_lease(lease_name, "default")
    assert tokens[1] > tokens[0], tokens


def test_in_process_elector_and_go_candidate(api, fleet):
    e = leasehold.Elector(api, "default", fleet.lease, "py", **TIMING)
    terms = []

    def work(ctx):
        terms.append(ctx.token)
        ctx.wait()

    r = Runner(e, work)
    eventually(lambda: e.is_leader(), "the in-process elector to lead")
    fleet.start("go", impl="leasehold")
    fleet.wait_event("go ready", ev="ready", id="go")
    assert e.release(WAIT), "resign did not finish"  # go takes over; we stand back
    go_term = fleet.wait_event("go to lead", ev="start", id="go")
    assert int(go_term["token"]) > terms[0]
    assert e.leader().holder == "go" and not e.is_leader()
    fleet.procs["go"].signal(signal.SIGTERM)  # go releases: we lead again
    eventually(lambda: len(terms) == 2, "a second term")
    assert terms[1] > int(go_term["token"])
    e.stop()
    r.join()
    assert r.exc is None and r.result is None
    assert LeaseClient(api, "default", fleet.lease).get().record.holder == ""


def test_in_process_handoff_to_go(api, fleet):
    e = leasehold.Elector(api, "default", fleet.lease, "py", **TIMING)
    causes = []

    def work(ctx):
        ctx.wait()
        causes.append(ctx.cause)

    r = Runner(e, work)
    eventually(lambda: e.is_leader(), "the in-process elector to lead")
    fleet.start("go", impl="leasehold")
    fleet.wait_event("go ready", ev="ready", id="go")
    e.handoff("go", timeout=WAIT)  # returns once go leads
    go = fleet.wait_event("go to lead", ev="start", id="go")
    assert isinstance(causes[0], leasehold.HandoffRequested) and causes[0].to == "go"
    view = e.leader()
    assert view.holder == "go" and view.token == int(go["token"]) and not view.is_me
    e.stop()
    r.join()
    assert r.exc is None and len(causes) == 1


def test_sigterm_example_hands_over(fleet, tmp_path):
    """examples/python/inprocess.py under SIGTERM: its work stops, it releases
    and exits 0, and a Go candidate takes over at once."""
    log = tmp_path / "work.log"
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"), WORK_LOG=str(log),
               LEASE_NAME=fleet.lease, POD_NAME="py-example", LEASE_DURATION="2", RENEW_DEADLINE="1.5",
               RETRY_PERIOD="0.3")
    p = subprocess.Popen([sys.executable, os.path.join(REPO, "examples", "python", "inprocess.py")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(lambda: log.exists() and log.read_text().count("work py-example") >= 3, "the example to work")
        fleet.start("go", impl="leasehold")
        fleet.wait_event("go ready", ev="ready", id="go")
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=WAIT)
        assert p.returncode == 0, out
        lines = log.read_text().splitlines()
        assert lines[-1].startswith("stop py-example"), lines[-3:]
        go = fleet.wait_event("go to lead", ev="start", id="go")
        assert int(go["token"]) > int(lines[0].split()[2])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_work_ignoring_cancellation_is_fenced(api, accounts, fleet, fenced, lease_name):
    """A Python leader whose work ignores its context keeps writing after its
    term ended (here: RBAC stops its renewals). The context still ends at the
    hard deadline, a Go candidate takes over with a larger token, and the
    fenced resource rejects every late write of the old leader."""
    client, sa = accounts.make("py-fenced", ["get", "list", "watch", "create", "update"])
    e = leasehold.Elector(client, "default", fleet.lease, "py", **TIMING)
    state = {}

    def work(ctx):
        import urllib.request, urllib.error
        state["token"] = ctx.token
        threading.Thread(target=lambda: ctx.wait() and state.setdefault("ctx_end", mono_ns()), daemon=True).start()
        until = None
        while until is None or time.monotonic() < until:
            if ctx.done() and until is None:
                state["ended"] = (time.monotonic(), ctx.cause)
                until = time.monotonic() + 4  # documented misuse: ignore the end for 4 s
            req = urllib.request.Request(f"{fenced.url}?id=py&fence={ctx.token}", data=b"", method="POST")
            try:
                urllib.request.urlopen(req, timeout=2).read()
            except urllib.error.HTTPError:
                state["rejected"] = state.get("rejected", 0) + 1
            time.sleep(0.05)
        state["finished"] = True

    r = Runner(e, work)
    eventually(lambda: "token" in state, "py to lead")
    fleet.start("go", impl="leasehold", extra=["--write-url", fenced.url])
    fleet.wait_event("go ready", ev="ready", id="go")
    accounts.set_verbs(sa, ["get", "list", "watch"])  # renewals now fail: 403
    go = fleet.wait_event("go to lead", ev="start", id="go", timeout=WAIT)
    eventually(lambda: "ended" in state, "py's context to end")
    assert isinstance(state["ended"][1], leasehold.RenewDeadlineExceeded), state["ended"]
    # The hard deadline: the context ended before the Go candidate took over.
    assert state["ctx_end"] < go["mono"], (state["ctx_end"], go)
    eventually(lambda: state.get("finished"), "the work to return")
    e.stop()  # py now follows go (its release was refused: 403)
    r.join()
    assert r.exc is None, r.exc
    assert int(go["token"]) > state["token"]
    log = fenced.log()
    first_go = min(w[2] for w in log if w[0] == "go" and w[3])
    late = [w for w in log if w[0] == "py" and w[2] > first_go]
    assert late, "the old leader should have tried to write after the new one (it ignores its context)"
    assert not any(w[3] for w in late), f"a write with an old token was accepted: {late}"
    assert state.get("rejected", 0) >= 1


@pytest.mark.parametrize("verbs,exists,verb", [
    (["get", "list", "watch"], False, "create"),
    (["get", "list", "watch", "create"], True, "update"),
    (["get", "list", "create", "update"], False, "watch"),
])
def test_missing_permission_names_the_verb(api, accounts, lease_name, verbs, exists, verb):
    if exists:
        LeaseClient(api, "default", lease_name).create(Record(lease_duration=1))
    client, _ = accounts.make(f"sa-{verb}", verbs)
    e = leasehold.Elector(client, "default", lease_name, "py", **TIMING)
    with pytest.raises(leasehold.ForbiddenError) as ei:
        e.run(lambda ctx: ctx.wait())
    assert ei.value.verb == verb and f'verb "{verb}"' in str(ei.value) and lease_name in str(ei.value), str(ei.value)
    assert ei.value.permanent


def test_lock_without_permission_and_bad_credentials(api, accounts, lease_name):
    client, _ = accounts.make("sa-none", ["list"])
    with pytest.raises(leasehold.ForbiddenError, match='verb "get"'):
        leasehold.Lock(client, "default", lease_name, **TIMING).acquire(timeout=WAIT)
    bad, _ = accounts.client_for("not-a-token")
    with pytest.raises(leasehold.UnauthorizedError, match="credentials were rejected"):
        leasehold.Lock(bad, "default", lease_name, **TIMING).try_acquire()


def test_lock_with_go_cli(api, lease_name):
    a = leasehold.Lock(api, "default", lease_name, "py-a", **TIMING)
    b = leasehold.Lock(api, "default", lease_name, "py-b", **TIMING)
    with a.acquire(timeout=WAIT) as held:
        assert held.token > 0 and not held.done()
        with pytest.raises(leasehold.Locked) as ei:
            b.try_acquire()
        assert ei.value.holder == "py-a" and "py-a" in str(ei.value)
        with pytest.raises(leasehold.LockTimeout):
            b.acquire(timeout=0.5)
        bin_ = os.environ.get("LEASEHOLD_BIN")
        kc = os.environ["KUBECONFIG"]
        if bin_:
            out = subprocess.run([bin_, "--kubeconfig", kc, "lock", lease_name, "--timeout", "1s", "--ttl", "3s",
                                  "--", "true"], capture_output=True, text=True, timeout=WAIT)
            assert out.returncode == 75, (out.returncode, out.stderr)  # not acquired
        first = held.token
    assert held.done() and isinstance(held.ctx.cause, leasehold.LeaseReleased)
    got = {}

    def go_lock():
        if bin_:
            got["go"] = subprocess.run([bin_, "--kubeconfig", kc, "lock", lease_name, "--timeout", "20s",
                                        "--ttl", "3s", "--", "sh", "-c", 'echo "$LEASEHOLD_TOKEN"'],
                                       capture_output=True, text=True, timeout=WAIT)

    held_b = b.acquire(timeout=WAIT)
    assert held_b.token > first
    t = threading.Thread(target=go_lock)
    t.start()
    time.sleep(0.5)  # the Go waiter is blocked on the lock meanwhile
    held_b.release()
    t.join(WAIT)
    if bin_:
        assert got["go"].returncode == 0, got["go"].stderr
        assert int(got["go"].stdout.strip()) > held_b.token
