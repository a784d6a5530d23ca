"""The wire format: a Lease's spec and annotations, exactly as client-go and
Go Leasehold write them.

A held lease writes ``holderIdentity``, ``leaseDurationSeconds``,
``acquireTime``, ``renewTime`` and ``leaseTransitions`` (always all five, as
client-go's resourcelock does); a release writes ``holderIdentity: ""``,
``leaseDurationSeconds: 1`` and keeps ``leaseTransitions``. Times are
MicroTime: RFC 3339 in UTC with exactly six fractional digits and ``Z``
(``2025-01-02T03:04:05.000000Z``), the one form the apiserver accepts for
every value, whole seconds included.

Leasehold annotations, both tied to the transition count they were written
at so that they die with the term:

* ``leasehold.io/token: "<token>/<transitions>/<holder>"``, the fencing token
  of the current term, believed only while the record shows that holder at
  that count (a foreign edit of holderIdentity is never credited with it);
* ``leasehold.io/preferred-holder: "<transitions>/<identity>"``, a planned
  handoff (the apiserver drops ``spec.preferredHolder`` unless the
  CoordinatedLeaderElection feature gate is on); the field is read first;
* ``leasehold.io/handoff-offer: "<transitions>/<identity>"``, written by a Go
  Leasehold holder on its own renewals once its work has stopped for a
  planned handoff: identity may take the lease at once by a conditional
  write on that version (the holder resumes only after a write of its own
  replaces it). Every write that starts a new term drops it.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import re
from typing import Any, Dict, Optional

TOKEN_ANNOTATION = "leasehold.io/token"
PREFERRED_HOLDER_ANNOTATION = "leasehold.io/preferred-holder"
# "<transitions>/<identity>": the holder, its work stopped, offers the lease
# to identity, which may take it at once by a conditional write.
OFFER_ANNOTATION = "leasehold.io/handoff-offer"

_UTC = _dt.timezone.utc
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)


def format_microtime(t: Optional[_dt.datetime]) -> Optional[str]:
    """MicroTime as the apiserver writes it: UTC, six fractional digits, 'Z'.
    None stays None (JSON null, as Go writes a zero time)."""
    if t is None:
        return None
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: MicroTime needs a timezone")
    return t.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_microtime(s: Optional[str]) -> Optional[_dt.datetime]:
    """Parses an RFC 3339 time (any number of fractional digits, any offset)
    into an aware UTC datetime truncated to the microsecond; None/"" -> None."""
    if not s:
        return None
    m = _TIME_RE.match(s)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = _UTC
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    t = _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tzinfo=tz)
    return t.astimezone(_UTC)


@dataclasses.dataclass(frozen=True)
class Record:
    """The leader-election state in a Lease's spec. The default Record is a
    lease nobody holds.

    ``lease_duration`` is whole seconds (the wire's unit): how long others
    wait, from the moment *they* see a change, before treating the lease as
    expired. ``renew_time`` and ``acquire_time`` were written by the holder's
    clock and are informational only: expiry is never judged by comparing
    them with a local clock.
    """

    holder: str = ""
    lease_duration: int = 0
    acquire_time: Optional[_dt.datetime] = None
    renew_time: Optional[_dt.datetime] = None
    transitions: int = 0
    preferred_holder: str = ""
    strategy: str = ""

    @property
    def held(self) -> bool:
        return self.holder != ""

    def released(self, now: _dt.datetime) -> "Record":
        """The record a holder writes when it gives the lease up, by
        client-go's convention: no holder, a one-second duration, the
        transition count kept, both times now. The preferred holder is kept so
        that a planned handoff reaches its target."""
        return Record(
            holder="",
            lease_duration=1,
            acquire_time=now,
            renew_time=now,
            transitions=self.transitions,
            preferred_holder=self.preferred_holder,
            strategy=self.strategy,
        )

    @staticmethod
    def from_spec(spec: Optional[Dict[str, Any]]) -> "Record":
        spec = spec or {}
        return Record(
            holder=spec.get("holderIdentity") or "",
            lease_duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=parse_microtime(spec.get("acquireTime")),
            renew_time=parse_microtime(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            preferred_holder=spec.get("preferredHolder") or "",
            strategy=spec.get("strategy") or "",
        )

    def to_spec(self) -> Dict[str, Any]:
        """The spec as client-go writes it: the five fields always,
        preferredHolder and strategy only when set."""
        spec: Dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": format_microtime(self.acquire_time),
            "renewTime": format_microtime(self.renew_time),
            "leaseTransitions": int(self.transitions),
        }
        if self.preferred_holder:
            spec["preferredHolder"] = self.preferred_holder
        if self.strategy:
            spec["strategy"] = self.strategy
        return spec

    def same_state(self, other: "Record") -> bool:
        """Whether two records describe the same state for expiry: a change of
        any field restarts an observer's wait, as in client-go."""
        return self == other


def format_token_annotation(token: int, transitions: int, holder: str) -> str:
    return f"{int(token)}/{int(transitions)}/{holder}"


def _cut_count(value: str):
    """Split "<transitions>/<identity>"; None unless the count is a
    non-negative integer and the identity is not empty."""
    tr, sep, ident = value.partition("/")
    if not sep or not ident or not tr.isdigit():
        return None
    n = int(tr)
    if n > 2**31 - 1:
        return None
    return n, ident


def parse_token_annotation(value: Optional[str], transitions: int, holder: str) -> int:
    """The token in a leasehold.io/token value if it was written by holder
    at transitions, else 0 (no token: a foreign or client-go holder)."""
    if not value:
        return 0
    tok, sep, rest = value.partition("/")
    cut = _cut_count(rest) if sep else None
    if cut is None or cut != (transitions, holder) or not tok.isdigit():
        return 0
    t = int(tok)
    return t if 0 < t < 2**64 else 0


def preferred_holder_value(identity: str, transitions: int) -> str:
    """The leasehold.io/preferred-holder value asking the holder at
    transitions to hand over to identity. The identity comes last: it may
    contain '/'."""
    return f"{int(transitions)}/{identity}"


def parse_preferred_annotation(value: Optional[str], transitions: int) -> str:
    cut = _cut_count(value) if value else None
    if cut is None or cut[0] != transitions:
        return ""
    return cut[1]


def token_from_resource_version(rv: str) -> int:
    """A term's fencing token: the resourceVersion its acquisition replaced."""
    try:
        n = int(rv)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise ValueError(
            f"resourceVersion {rv!r} is not a positive integer; fencing tokens need an etcd-backed apiserver"
        )
    return n


def compare_resource_versions(a: str, b: str) -> Optional[int]:
    """-1, 0 or 1 comparing two resourceVersions as integers (guaranteed
    comparable since Kubernetes 1.35), None if either is not a number."""
    try:
        x, y = int(a), int(b)
    except (TypeError, ValueError):
        return None
    return (x > y) - (x < y)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One observed version of a Lease. Immutable; ``obj`` is the raw object
    (a dict) the snapshot was read from, never modified."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    record: Record
    token: int
    obj: Dict[str, Any] = dataclasses.field(repr=False, compare=False)
    # The identity the holder offers the lease to (OFFER_ANNOTATION at the
    # record's transition count), "" when none or not held.
    offered_to: str = ""

    @staticmethod
    def from_object(obj: Dict[str, Any]) -> "Snapshot":
        meta = obj.get("metadata") or {}
        ann = meta.get("annotations") or {}
        rec = Record.from_spec(obj.get("spec"))
        token = parse_token_annotation(ann.get(TOKEN_ANNOTATION), rec.transitions, rec.holder) if rec.held else 0
        if not rec.preferred_holder:
            p = parse_preferred_annotation(ann.get(PREFERRED_HOLDER_ANNOTATION), rec.transitions)
            if p:
                rec = dataclasses.replace(rec, preferred_holder=p)
        offered_to = parse_preferred_annotation(ann.get(OFFER_ANNOTATION), rec.transitions) if rec.held else ""
        return Snapshot(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            record=rec,
            token=token,
            obj=obj,
            offered_to=offered_to,
        )

    def object_with(self, rec: Record, token: int = 0) -> Dict[str, Any]:
        """The object to PUT to replace this version's record with rec:
        metadata (labels, other annotations, resourceVersion) kept, spec
        replaced, the preferred-holder annotation set or removed, a
        non-zero token recorded, and a handoff offer dropped when rec
        starts a new term or releases (another holder or transition count)."""
        obj = copy.deepcopy(self.obj)
        obj["spec"] = rec.to_spec()
        meta = obj.setdefault("metadata", {})
        set_annotations(meta, rec, token)
        if rec.holder != self.record.holder or rec.transitions != self.record.transitions:
            ann = meta.get("annotations") or {}
            ann.pop(OFFER_ANNOTATION, None)
            if not ann:
                meta.pop("annotations", None)
        return obj

    def with_offer(self, identity: str) -> "Snapshot":
        """A copy whose object offers the lease to identity, for the
        holder's next update on it."""
        obj = copy.deepcopy(self.obj)
        ann = obj.setdefault("metadata", {}).setdefault("annotations", {})
        ann[OFFER_ANNOTATION] = preferred_holder_value(identity, self.record.transitions)
        return dataclasses.replace(self, obj=obj, offered_to=identity)


def set_annotations(meta: Dict[str, Any], rec: Record, token: int) -> None:
    ann = dict(meta.get("annotations") or {})
    if rec.preferred_holder:
        ann[PREFERRED_HOLDER_ANNOTATION] = preferred_holder_value(rec.preferred_holder, rec.transitions)
    else:
        ann.pop(PREFERRED_HOLDER_ANNOTATION, None)
    if token:
        ann[TOKEN_ANNOTATION] = format_token_annotation(token, rec.transitions, rec.holder)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
