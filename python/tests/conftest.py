"""Fixtures for the tests. Integration tests (marked ``apiserver``) need a
real kube-apiserver: KUBECONFIG names an admin kubeconfig; the Go test
test/python starts a control plane and runs pytest with it, and also passes
LEASEHOLD_GO_CANDIDATE (a Go candidate process: Leasehold elector, lock or
client-go) and LEASEHOLD_BIN (the leasehold CLI). Without KUBECONFIG they are
skipped; the unit tests run anyway."""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # the leasehold package, uninstalled

WAIT = 30.0  # bound for things that must happen eventually (never a speed check)


def pytest_configure(config):
    config.addinivalue_line("markers", "apiserver: needs a real kube-apiserver (KUBECONFIG)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KUBECONFIG"):
        return
    skip = pytest.mark.skip(reason="integration test: set KUBECONFIG (go test ./test/python starts a control plane)")
    for item in items:
        if "apiserver" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kubeconfig():
    return os.environ["KUBECONFIG"]


@pytest.fixture(scope="session")
def api(kubeconfig):
    import kubernetes
    return kubernetes.config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture
def lease_name(request):
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return f"py-{base}-{uuid.uuid4().hex[:6]}"


def eventually(cond, what, timeout=WAIT):
    until = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < until, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# Candidate processes ------------------------------------------------------------------

FAST = ["--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"]


class Proc:
    """A candidate process whose JSON-line events are collected."""

    def __init__(self, fleet, ident, argv, env=None):
        self.fleet, self.id = fleet, ident
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  start_new_session=True)
        self.stderr = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._e = threading.Thread(target=lambda: self.stderr.extend(self.p.stderr), daemon=True)
        self._t.start()
        self._e.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev.setdefault("id", self.id)
            self.fleet.add(ev)
        self.p.wait()
        self.fleet.add({"ev": "exited", "id": self.id, "mono": mono_ns(), "code": self.p.returncode})

    def signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def wait(self, timeout=WAIT):
        code = self.p.wait(timeout)
        self._t.join(timeout)
        return code

    def err(self):
        return b"".join(self.stderr).decode("utf-8", "replace")


class Fleet:
    """Starts Python and Go candidates on one Lease and merges their events."""

    def __init__(self, kubeconfig, lease):
        self.kubeconfig, self.lease = kubeconfig, lease
        self.mu = threading.Lock()
        self.events = []
        self.procs = {}

    def add(self, ev):
        with self.mu:
            self.events.append(ev)

    def start(self, ident, impl="python", flags=FAST, extra=(), env=None):
        """impl: python (Python elector), python-lock, leasehold (Go elector),
        lock (Go mutex) or client-go."""
        common = ["--kubeconfig", self.kubeconfig, "--lease", self.lease, "--id", ident] + list(flags) + list(extra)
        e = dict(os.environ)
        if impl.startswith("python"):
            e["PYTHONPATH"] = os.path.dirname(HERE)
            argv = [sys.executable, "-m", "leasehold.candidate", "--impl", "lock" if impl == "python-lock" else "elector"] + common
        else:
            go = os.environ.get("LEASEHOLD_GO_CANDIDATE")
            if not go:
                pytest.skip("LEASEHOLD_GO_CANDIDATE is not set: run through go test ./test/python")
            e["LEASEHOLD_TEST_CANDIDATE"] = "1"
            argv = [go, "candidate", "--impl", impl] + common
        e.update(env or {})
        p = Proc(self, ident, argv, e)
        self.procs[ident] = p
        return p

    def where(self, **kv):
        with self.mu:
            return [ev for ev in self.events if all(ev.get(k) == v for k, v in kv.items())]

    def wait_event(self, what, timeout=WAIT, **kv):
        return eventually(lambda: self.where(**kv), what, timeout)[-1]

    def leader(self):
        """The id of the candidate whose last event is an open "start"."""
        open_ = {}
        with self.mu:
            for ev in self.events:
                if ev["ev"] == "start":
                    open_[ev["id"]] = ev
                elif ev["ev"] in ("stop", "exited"):
                    open_.pop(ev["id"], None)
        return next(iter(open_), None) if len(open_) == 1 else None

    def terms(self):
        """Terms (id, impl, token, start, end) on CLOCK_MONOTONIC; open terms end now."""
        out, open_ = [], {}
        with self.mu:
            evs = list(self.events)
        for ev in evs:
            if ev["ev"] == "start":
                open_[ev["id"]] = len(out)
                out.append({"id": ev["id"], "impl": ev.get("impl", ""), "token": ev.get("token", ""),
                            "start": ev["mono"], "end": None, "cause": ""})
            elif ev["ev"] in ("stop", "exited") and ev["id"] in open_:
                t = out[open_.pop(ev["id"])]
                t["end"], t["cause"] = ev["mono"], ev.get("cause", "")
        now = mono_ns()
        for t in out:
            if t["end"] is None:
                t["end"] = now
        return sorted(out, key=lambda t: t["start"])

    def check(self):
        """Asserts no two candidates' terms overlap and Leasehold tokens grow."""
        ts = self.terms()
        overlaps = [f"{a['id']} ({a['impl']}, token {a['token']}) led until {a['end']}, "
                    f"{b['id']} ({b['impl']}, token {b['token']}) started at {b['start']}"
                    for i, a in enumerate(ts) for b in ts[i + 1:]
                    if a["id"] != b["id"] and b["start"] < a["end"]]
        assert not overlaps, "overlapping terms:\n" + "\n".join(overlaps) + "\n" + self.dump()
        toks = [(t["id"], int(t["token"])) for t in ts if t["impl"] != "client-go"]
        backwards = [f"{b[0]}'s token {b[1]} is not above {a[0]}'s {a[1]}" for a, b in zip(toks, toks[1:]) if b[1] <= a[1]]
        assert not backwards, "tokens went backwards:\n" + "\n".join(backwards) + "\n" + self.dump()
        failed = self.where(ev="exit")
        failed = [ev for ev in failed if ev.get("err")]
        assert not failed, "candidates failed (a conflict or error that should have been handled):\n" + self.dump()
        return ts

    def dump(self):
        with self.mu:
            lines = [json.dumps(ev) for ev in self.events]
        errs = [f"--- {i} stderr:\n{p.err()[-3000:]}" for i, p in self.procs.items()]
        return "\n".join(lines + errs)

    def close(self):
        for p in self.procs.values():
            p.signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.p.pid, signal.SIGKILL)
                p.wait(10)


@pytest.fixture
def fleet(kubeconfig, lease_name):
    f = Fleet(kubeconfig, lease_name)
    yield f
    f.close()


# A fenced resource ------------------------------------------------------------------


class FencedStore:
    """An HTTP resource guarded by fencing tokens, as in the Go harness: a
    POST ?id=&fence=&sent= is accepted if fence is at least the highest token
    accepted so far, else rejected (409). Every write is logged."""

    def __init__(self):
        self.mu = threading.Lock()
        self.highest = 0
        self.writes = []  # (id, fence, recv mono ns, accepted)
        store = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                q = parse_qs(urlparse(self.path).query)
                ident, fence = q.get("id", [""])[0], int(q.get("fence", ["0"])[0] or 0)
                with store.mu:
                    ok = fence >= store.highest
                    if ok:
                        store.highest = fence
                    store.writes.append((ident, fence, mono_ns(), ok))
                self.send_response(200 if ok else 409)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/write"
        self._t = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._t.start()

    def log(self):
        with self.mu:
            return list(self.writes)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fenced():
    s = FencedStore()
    yield s
    s.close()


# Service accounts with chosen permissions ------------------------------------------------


class Accounts:
    """Creates service accounts with a Role on Leases and returns ApiClients
    (and kubeconfig files) that authenticate as them."""

    def __init__(self, api, kubeconfig, tmp):
        import kubernetes
        self.k = kubernetes
        self.api, self.kubeconfig, self.tmp = api, kubeconfig, tmp
        self.core = kubernetes.client.CoreV1Api(api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(api)

    def make(self, name, verbs, namespace="default"):
        """A new service account name-<random> allowed verbs on Leases:
        (ApiClient, its name)."""
        name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        self.rbac.create_namespaced_role(namespace, {
            "metadata": {"name": name},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": list(verbs)}]})
        self.rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
        tr = self.core.create_namespaced_service_account_token(name, namespace, {"spec": {"expirationSeconds": 3600}})
        return self.client_for(tr.status.token)[0], name

    def set_verbs(self, name, verbs, namespace="default"):
        self.rbac.patch_namespaced_role(name, namespace, {
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": list(verbs)}]})

    def client_for(self, token):
        """(ApiClient, kubeconfig path) for a bearer token."""
        import yaml
        with open(self.kubeconfig) as f:
            kc = yaml.safe_load(f)
        ctx = {c["name"]: c["context"] for c in kc["contexts"]}[kc["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in kc["clusters"]}[ctx["cluster"]]
        out = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
               "clusters": [{"name": "c", "cluster": cluster}],
               "users": [{"name": "u", "user": {"token": token}}],
               "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "u"}}]}
        fd, path = tempfile.mkstemp(dir=self.tmp, suffix=".kubeconfig")
        with os.fdopen(fd, "w") as f:
            json.dump(out, f)  # JSON is YAML
        return self.k.config.new_client_from_config(config_file=path), path


@pytest.fixture
def accounts(api, kubeconfig, tmp_path):
    return Accounts(api, kubeconfig, str(tmp_path))


def raw_lease(api, name, namespace="default"):
    """The Lease as JSON, exactly as the apiserver returns it."""
    import kubernetes
    r = kubernetes.client.CoordinationV1Api(api).read_namespaced_lease(name, namespace, _preload_content=False)
    return json.loads(r.data)


def b64(s):
    return base64.b64encode(s.encode()).decode()
