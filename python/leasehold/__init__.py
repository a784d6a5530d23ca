"""Leasehold for Python: leader election and locks on Kubernetes Leases
(coordination.k8s.io/v1), wire-compatible with client-go and Go Leasehold.

    import kubernetes, leasehold

    api = kubernetes.config.new_client_from_config()   # or None: in-cluster, else kubeconfig
    elector = leasehold.Elector(api, "default", "my-app")

    def work(ctx):                         # runs only while this process leads
        while not ctx.wait(1.0):           # ends when leadership ends
            write_to_storage(token=ctx.token)

    elector.run(work, stop=leasehold.stop_on_signals())

Followers watch the Lease (no polling) and take over the moment it is
released or expires in their own view; the leader's context ends at the
hard deadline, before anyone else can lead; every term has a fencing token.
See the docstrings of Elector and Lock, and docs/python.md.
"""

from .context import Context
from .elector import Elector, Leader, request_handoff
from .errors import (
    AlreadyExistsError,
    APIError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    GoneError,
    HandoffRequested,
    InvalidError,
    LeaseholdError,
    LeaseLost,
    LeaseReleased,
    Locked,
    LockTimeout,
    NotFoundError,
    RenewDeadlineExceeded,
    Resigned,
    Stopped,
    TermEnded,
    UnauthorizedError,
    UnavailableError,
)
from .lock import Held, Lock
from .record import PREFERRED_HOLDER_ANNOTATION, TOKEN_ANNOTATION, Record
from .signals import SignalReceived, stop_on_signals

__version__ = "0.1.0"

__all__ = [
    "Context", "Elector", "Leader", "Lock", "Held", "Record", "request_handoff", "stop_on_signals",
    "SignalReceived", "TOKEN_ANNOTATION", "PREFERRED_HOLDER_ANNOTATION",
    "LeaseholdError", "ConfigError", "APIError", "NotFoundError", "AlreadyExistsError", "ConflictError",
    "ForbiddenError", "UnauthorizedError", "InvalidError", "GoneError", "UnavailableError",
    "TermEnded", "LeaseLost", "RenewDeadlineExceeded", "HandoffRequested", "LeaseReleased", "Resigned", "Stopped",
    "Locked", "LockTimeout",
]
