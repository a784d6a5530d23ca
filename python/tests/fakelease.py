"""An in-memory Lease API with the LeaseClient interface, for unit tests:
conditional updates by resourceVersion (409 on a stale one), a global
revision counter, watches fed from the same store, and fault switches."""

from __future__ import annotations

import copy
import queue
import threading
import time

from leasehold import errors
from leasehold.client import RequestCounts
from leasehold.record import Record, Snapshot, set_annotations


class FakeStore:
    def __init__(self):
        self.mu = threading.Lock()
        self.rev = 100
        self.objs = {}
        self.watchers = []
        self.block_updates = threading.Event()  # set: updates hang until unblocked
        self.unblocked = threading.Event()
        self.update_sent = []  # (identity, renewTime) of every update received
        self.update_delay = 0.0  # seconds each update takes before it applies
        self.watch_rvs = []  # the resourceVersion every watch started from
        self.applied = []  # (monotonic time the update was received, when it applied) per successful update

    def end_watches(self, status=None):
        """Ends every open watch: cleanly, or with an ERROR event (status)."""
        with self.mu:
            for w in list(self.watchers):
                if status is not None:
                    w.q.put(("ERROR", status))
                w.q.put(None)

    def _bump(self):
        self.rev += 1
        return str(self.rev)

    def _emit(self, ns, name, typ, obj):
        for w in list(self.watchers):
            if w.ns == ns and w.name == name:
                w.q.put((typ, copy.deepcopy(obj)))


class FakeWatch:
    def __init__(self, store, ns, name):
        self.store, self.ns, self.name = store, ns, name
        self.q = queue.Queue()
        self.closed = False

    def close(self):
        self.closed = True
        self.q.put(None)

    def __iter__(self):
        try:
            while True:
                item = self.q.get()
                if item is None or self.closed:
                    return
                yield item
        finally:
            with self.store.mu:
                if self in self.store.watchers:
                    self.store.watchers.remove(self)


class FakeClient:
    def __init__(self, store, namespace="default", name="fake"):
        self.store, self.namespace, self.name = store, namespace, name
        self.counts = RequestCounts()

    def _key(self):
        return (self.namespace, self.name)

    def get(self, timeout=None):
        self.counts.add("get")
        with self.store.mu:
            obj = self.store.objs.get(self._key())
            if obj is None:
                raise errors.NotFoundError("get", self.namespace, self.name, 404, "not found")
            return Snapshot.from_object(copy.deepcopy(obj))

    def create(self, rec, timeout=None):
        self.counts.add("create")
        with self.store.mu:
            if self._key() in self.store.objs:
                raise errors.AlreadyExistsError("create", self.namespace, self.name, 409, "exists")
            meta = {"name": self.name, "namespace": self.namespace, "uid": "uid-1"}
            set_annotations(meta, rec, 0)
            meta["resourceVersion"] = self.store._bump()
            obj = {"metadata": meta, "spec": rec.to_spec()}
            self.store.objs[self._key()] = obj
            self.store._emit(self.namespace, self.name, "ADDED", obj)
            return Snapshot.from_object(copy.deepcopy(obj))

    def update(self, base, rec, token=0, timeout=None):
        self.counts.add("update")
        received = time.monotonic()
        self.store.update_sent.append((rec.holder, rec.renew_time))
        if self.store.update_delay:
            time.sleep(self.store.update_delay)
        if self.store.block_updates.is_set():
            self.store.unblocked.wait(timeout)
            raise errors.UnavailableError("update", self.namespace, self.name, 0, "timed out (fake)")
        body = base.object_with(rec, token)
        with self.store.mu:
            cur = self.store.objs.get(self._key())
            if cur is None:
                raise errors.NotFoundError("update", self.namespace, self.name, 404, "not found")
            if cur["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
                raise errors.ConflictError("update", self.namespace, self.name, 409, "stale")
            body["metadata"]["resourceVersion"] = self.store._bump()
            self.store.objs[self._key()] = body
            self.store.applied.append((received, time.monotonic()))
            self.store._emit(self.namespace, self.name, "MODIFIED", body)
            return Snapshot.from_object(copy.deepcopy(body))

    def watch(self, rv):
        self.counts.add("watch")
        self.store.watch_rvs.append(rv)
        w = FakeWatch(self.store, self.namespace, self.name)
        with self.store.mu:
            self.store.watchers.append(w)
            cur = self.store.objs.get(self._key())
            if cur is not None and not rv:  # as the apiserver: the current state first
                w.q.put(("ADDED", copy.deepcopy(cur)))
            elif cur is not None and int(cur["metadata"]["resourceVersion"]) > int(rv):
                w.q.put(("MODIFIED", copy.deepcopy(cur)))
        return w

    def put_raw(self, rec: Record, token=0):
        """A foreign write (kubectl, client-go) of rec, unconditional."""
        with self.store.mu:
            cur = self.store.objs.get(self._key())
            meta = copy.deepcopy(cur["metadata"]) if cur else {"name": self.name, "namespace": self.namespace, "uid": "uid-1"}
            set_annotations(meta, rec, token)
            meta["resourceVersion"] = self.store._bump()
            obj = {"metadata": meta, "spec": rec.to_spec()}
            self.store.objs[self._key()] = obj
            self.store._emit(self.namespace, self.name, "MODIFIED" if cur else "ADDED", obj)
