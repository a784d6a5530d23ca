"""LeaseClient: reads, creates, conditionally replaces and watches one Lease
through the ``kubernetes`` client, with raw JSON bodies (so it works with
every client release, including those without ``V1MicroTime``) and typed
errors (see leasehold.errors).
"""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import Any, Dict, Iterator, Optional, Tuple

from . import errors
from .record import Record, Snapshot, set_annotations

_WATCH_MIN_SECONDS = 300  # server-side watch timeout: 5-10 minutes, as client-go


def _load_api_client():
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


class RequestCounts:
    """API requests made, by kind: get, create, update, watch. Thread-safe."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._n = {"get": 0, "create": 0, "update": 0, "watch": 0, "other": 0}

    def add(self, kind: str) -> None:
        with self._mu:
            self._n[kind] = self._n.get(kind, 0) + 1

    def snapshot(self) -> Dict[str, int]:
        with self._mu:
            return dict(self._n)


class LeaseClient:
    """One Lease, namespace/name. Holds no cached state; safe for concurrent
    use. ``api`` is a ``kubernetes.client.ApiClient`` (None: in-cluster
    config, else the kubeconfig).

    Watches run on a connection pool of their own, made from the same
    configuration (credentials, TLS, proxy) and default headers: an HTTP/1.1
    watch holds its connection for minutes, so sharing the pool would leave
    a follower's takeover write a new TLS connection to open every time.
    Apart, the connection of the last read or write stays ready for the
    next one while the apiserver keeps it open (90 s idle)."""

    def __init__(self, api, namespace: str, name: str, counts: Optional[RequestCounts] = None):
        self._api_client = api
        self._typed = None
        self._watch_typed = None
        self._mu = threading.Lock()
        self.namespace, self.name = namespace, name
        self.counts = counts or RequestCounts()

    @property
    def _api(self):
        """The typed API, made on first use (None: in-cluster config, else the
        kubeconfig, loaded then)."""
        with self._mu:
            if self._typed is None:
                import kubernetes

                if self._api_client is None:
                    self._api_client = _load_api_client()
                self._typed = kubernetes.client.CoordinationV1Api(self._api_client)
            return self._typed

    @property
    def _watch_api(self):
        """The typed API for watches, on its own connection pool (see the
        class doc), made on first use."""
        base = self._api
        with self._mu:
            if self._watch_typed is None:
                import kubernetes

                src = self._api_client
                conf = getattr(src, "configuration", None)
                if conf is None:  # not an ApiClient: share it
                    self._watch_typed = base
                else:
                    own = kubernetes.client.ApiClient(configuration=conf, cookie=getattr(src, "cookie", None))
                    own.default_headers.update(getattr(src, "default_headers", None) or {})
                    self._watch_typed = kubernetes.client.CoordinationV1Api(own)
            return self._watch_typed

    # -- requests -------------------------------------------------------------

    def _call(self, verb: str, fn, *args, timeout: Optional[float] = None, **kw) -> Dict[str, Any]:
        self.counts.add(verb)
        kw["_preload_content"] = False
        if timeout is not None:
            t = max(float(timeout), 0.001)
            kw["_request_timeout"] = (t, t)
        try:
            resp = fn(*args, **kw)
            data = resp.data
        except Exception as e:  # noqa: BLE001 - classified below
            raise classify(verb, self.namespace, self.name, e) from e
        try:
            return json.loads(data)
        except ValueError as e:
            raise errors.UnavailableError(verb, self.namespace, self.name, 0, f"bad JSON in the answer: {e}") from e

    def get(self, timeout: Optional[float] = None) -> Snapshot:
        """Reads the Lease; NotFoundError if it does not exist."""
        obj = self._call("get", self._api.read_namespaced_lease, self.name, self.namespace, timeout=timeout)
        return Snapshot.from_object(obj)

    def create(self, rec: Record, timeout: Optional[float] = None) -> Snapshot:
        """Creates the Lease with rec; AlreadyExistsError if it exists."""
        meta: Dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        set_annotations(meta, rec, 0)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": rec.to_spec()}
        obj = self._call("create", self._api.create_namespaced_lease, self.namespace, body, timeout=timeout)
        return Snapshot.from_object(obj)

    def update(self, base: Snapshot, rec: Record, token: int = 0, timeout: Optional[float] = None) -> Snapshot:
        """Replaces the record of the Lease in base (PUT with base's
        resourceVersion: ConflictError if it changed since). Metadata, labels
        and other annotations are kept; a non-zero token is recorded in
        leasehold.io/token; the preferred holder in the spec and in
        leasehold.io/preferred-holder."""
        body = base.object_with(rec, token)
        obj = self._call("update", self._api.replace_namespaced_lease, self.name, self.namespace, body, timeout=timeout)
        return Snapshot.from_object(obj)

    def watch(self, resource_version: str) -> "Watch":
        """Opens a watch of this Lease alone (field selector metadata.name)
        from resource_version ("" means from now). Events are
        (type, object dict) pairs; see Watch."""
        seconds = _WATCH_MIN_SECONDS + random.randrange(_WATCH_MIN_SECONDS)
        kw: Dict[str, Any] = dict(
            field_selector=f"metadata.name={self.name}",
            watch=True,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=(30, seconds + 30),  # a dead connection is noticed
        )
        if resource_version:
            kw["resource_version"] = resource_version
        self.counts.add("watch")
        try:
            resp = self._watch_api.list_namespaced_lease(self.namespace, **kw)
        except Exception as e:  # noqa: BLE001
            raise classify("watch", self.namespace, self.name, e) from e
        return Watch(resp, self)


class Watch:
    """An open watch. Iterate for (type, object) pairs; ``close()`` from any
    thread ends a blocked iteration (the connection is shut down)."""

    def __init__(self, resp, client: LeaseClient):
        self._resp, self._client = resp, client
        self._closed = threading.Event()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        _shutdown(self._resp)

    def __iter__(self) -> Iterator[Tuple[str, Dict[str, Any]]]:
        buf = b""
        try:
            for chunk in self._resp.stream(amt=None, decode_content=False):
                if self._closed.is_set():
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        ev = json.loads(line)
                        yield ev.get("type", ""), ev.get("object") or {}
        except Exception as e:  # noqa: BLE001
            if self._closed.is_set():
                return
            raise classify("watch", self._client.namespace, self._client.name, e) from e
        finally:
            try:
                self._resp.release_conn()
            except Exception:  # noqa: BLE001
                pass


def _shutdown(resp) -> None:
    """Interrupts a read blocked on resp from another thread."""
    fn = getattr(resp, "shutdown", None)  # urllib3 >= 2.3
    if fn is not None:
        try:
            fn()
            return
        except Exception:  # noqa: BLE001
            pass
    conn = getattr(resp, "connection", None) or getattr(resp, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return
    try:
        resp.close()
    except Exception:  # noqa: BLE001
        pass


def status_error(verb: str, namespace: str, name: str, status: Dict[str, Any]) -> errors.APIError:
    """The APIError of a metav1.Status (an ERROR watch event)."""
    code = int(status.get("code") or 0)
    return _by_status(verb, namespace, name, code, status.get("reason") or "", status.get("message") or str(status))


def _by_status(verb: str, namespace: str, name: str, code: int, reason: str, message: str) -> errors.APIError:
    args = (verb, namespace, name, code, message)
    if code == 404:
        return errors.NotFoundError(*args)
    if code == 409:
        if reason == "AlreadyExists":
            return errors.AlreadyExistsError(*args)
        return errors.ConflictError(*args)
    if code == 403:
        return errors.ForbiddenError(*args)
    if code == 401:
        return errors.UnauthorizedError(*args)
    if code in (400, 422):
        return errors.InvalidError(*args)
    if code == 410 or reason in ("Expired", "Gone"):
        return errors.GoneError(*args)
    if code in (429, 500, 502, 503, 504) or code == 0:
        return errors.UnavailableError(*args)
    return errors.APIError(*args)


def classify(verb: str, namespace: str, name: str, e: BaseException) -> errors.APIError:
    """Turns a kubernetes-client or transport exception into an APIError."""
    if isinstance(e, errors.APIError):
        return e
    status = getattr(e, "status", None)
    if isinstance(status, int) and status > 0:
        body = getattr(e, "body", None)
        reason, message = getattr(e, "reason", "") or "", ""
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8", "replace")
        if body:
            try:
                st = json.loads(body)
                reason, message = st.get("reason") or reason, st.get("message") or ""
            except ValueError:
                message = body
        return _by_status(verb, namespace, name, status, reason, message or f"HTTP {status} {reason}")
    return errors.UnavailableError(verb, namespace, name, 0, f"{type(e).__name__}: {e}")
