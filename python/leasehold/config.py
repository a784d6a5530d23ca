"""Validation of what names a Lease and of the timing, and defaults.

Durations are seconds (int or float) or ``datetime.timedelta``. The defaults
are client-go's recommended values, so that mixed fleets agree:
lease_duration 15, renew_deadline 10, retry_period 2.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
import socket
from typing import List, Optional, Union

from .errors import ConfigError

DEFAULT_LEASE_DURATION = 15
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0

Seconds = Union[int, float, _dt.timedelta]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _seconds(field: str, v: Optional[Seconds], default: float, problems: List[str]) -> float:
    if v is None:
        return default
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        problems.append(f"{field} {v!r} must be a number of seconds or a datetime.timedelta")
        return default
    return float(v)


@dataclasses.dataclass(frozen=True)
class Timing:
    """A holder's timing, with client-go's meanings (all in seconds).

    * ``lease_duration``: written to the Lease; how long others wait after
      *they* last saw it change before they may take it: the crash-failover
      time. Whole seconds, at least 1.
    * ``renew_deadline``: how long a holder keeps its term without a
      successful renewal, counted from when the last successful one was
      *sent*; the leadership context ends then. Must be less than
      lease_duration: the margin absorbs clock-rate differences (the fastest
      clock must run less than lease_duration/renew_deadline times as fast as
      the slowest).
    * ``retry_period``: interval between renewals (one write each) and
      between retries after transient errors. Less than renew_deadline.
    """

    lease_duration: int = DEFAULT_LEASE_DURATION
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    retry_period: float = DEFAULT_RETRY_PERIOD

    @staticmethod
    def build(lease_duration: Optional[Seconds], renew_deadline: Optional[Seconds],
              retry_period: Optional[Seconds], problems: List[str]) -> "Timing":
        ld = _seconds("lease_duration", lease_duration, DEFAULT_LEASE_DURATION, problems)
        rd = _seconds("renew_deadline", renew_deadline, DEFAULT_RENEW_DEADLINE, problems)
        rp = _seconds("retry_period", retry_period, DEFAULT_RETRY_PERIOD, problems)
        if ld < 1 or ld != int(ld):
            problems.append(
                f"lease_duration {lease_duration!r} must be a whole number of seconds, at least 1 (the Lease stores seconds)")
        if rd <= 0:
            problems.append(f"renew_deadline {renew_deadline!r} must be positive")
        elif rd >= ld:
            problems.append(f"renew_deadline {rd}s must be less than lease_duration {ld:g}s")
        if rp <= 0:
            problems.append(f"retry_period {retry_period!r} must be positive")
        elif rd > 0 and rp >= rd:
            problems.append(
                f"retry_period {rp}s must be less than renew_deadline {rd}s, or a single failed renewal ends the term")
        return Timing(int(ld) if ld == int(ld) and ld >= 1 else 1, rd, rp)


def validate_ref(namespace: str, name: str, problems: List[str]) -> None:
    """namespace must be a DNS-1123 label, name a DNS-1123 subdomain (the
    rules for a Lease's name); problems name the parameter and the value."""
    if not isinstance(namespace, str) or not namespace:
        problems.append(f"namespace {namespace!r} is required")
    elif len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        problems.append(
            f"namespace {namespace!r} is not a valid namespace name: at most 63 characters of lower-case "
            "letters, digits and '-', starting and ending with a letter or digit")
    if not isinstance(name, str) or not name:
        problems.append(f"name {name!r} is required")
    elif len(name) > 253 or not all(_DNS1123_LABEL.match(p) and len(p) <= 63 for p in name.split(".")):
        problems.append(
            f"name {name!r} is not a valid Lease name: at most 253 characters of lower-case letters, digits, "
            "'-' and '.', each '.'-separated part starting and ending with a letter or digit")


def validate_identity(identity: Optional[str], problems: List[str]) -> str:
    if identity is None:
        try:
            return default_identity()
        except OSError as e:
            problems.append(f"identity is not set and no default could be found: {e}")
            return ""
    if not isinstance(identity, str) or not identity or identity.strip() != identity:
        problems.append(f"identity {identity!r} must be a non-empty string without surrounding whitespace")
    return identity if isinstance(identity, str) else ""


def default_identity() -> str:
    """The POD_NAME environment variable if set, else the hostname."""
    ident = os.environ.get("POD_NAME") or socket.gethostname()
    if not ident:
        raise OSError("hostname is empty")
    return ident


def check(where: str, problems: List[str]) -> None:
    if problems:
        raise ConfigError(where, problems)
