"""A candidate process for interop tests, benchmarks and fault harnesses:

    python3 -m leasehold.candidate --kubeconfig K --lease NAME --id ID [flags]

the Python counterpart of Leasehold's Go candidate (same flags, same
output). It campaigns with an Elector (--impl elector) or takes a Lock again
and again (--impl lock), reports every term on standard output as JSON lines
stamped with CLOCK_MONOTONIC (shared by all processes on a machine):

    {"ev":"start","id":"a","impl":"leasehold-python","mono":123,"token":"42"}

events "ready", "start", "stop" (with "cause"), "requests" (counts by kind,
on SIGUSR1 and at exit) and "exit" (with "err" on failure), and while it
leads POSTs writes to a fenced resource (--write-url URL?id=&fence=&sent=)
with its token, like Go Leasehold candidates. --clock-rate runs its
monotonic clock fast or slow (fault harnesses); --ignore-cancel and
--unsafe-no-deadline make a work function that keeps acting after its
context ended (fencing tests and control runs). SIGTERM or SIGINT: stop,
release, exit 0. Exit 1 on an error, 2 on bad flags.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Optional

from . import errors
from .client import LeaseClient
from .clock import RateClock
from .context import Context
from .elector import Elector
from .lock import Lock
from .signals import stop_on_signals

IMPL = "leasehold-python"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(s: str) -> float:
    """A Go duration ("1500ms", "2s", "1m30s") or plain seconds, in seconds."""
    s = s.strip()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise argparse.ArgumentTypeError(f"invalid duration {s!r} (want e.g. 2s, 1500ms)")
    return total


def parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "t", "true", "yes"):
        return True
    if v in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {s!r}")


def mono_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Emitter:
    def __init__(self, out, ident: str):
        self._out, self._id, self._mu = out, ident, threading.Lock()

    def emit(self, ev: str, **fields) -> None:
        d = {"ev": ev, "id": self._id, "impl": IMPL, "mono": mono_ns()}
        d.update({k: v for k, v in fields.items() if v not in (None, "")})
        line = json.dumps(d, separators=(",", ":")) + "\n"
        with self._mu:
            self._out.write(line)
            self._out.flush()


class Worker:
    """What a candidate does while it leads: log the term and write to the
    fenced resource, checking its context before each write."""

    def __init__(self, opts, out: Emitter, stop: Context, client: Optional[LeaseClient] = None):
        self.o, self.out, self.stop, self.client = opts, out, stop, client

    def write(self, token: int) -> None:
        if not self.o.write_url:
            return
        q = urllib.parse.urlencode({"id": self.o.id, "fence": str(token), "sent": str(mono_ns())})
        try:
            req = urllib.request.Request(self.o.write_url + "?" + q, data=b"", method="POST")
            with urllib.request.urlopen(req, timeout=2) as resp:
                resp.read()
        except OSError:
            pass  # the resource's answer does not matter (a rejection is an HTTPError)

    def term(self, ctx: Context) -> None:
        self.out.emit("start", token=str(ctx.token))
        while not ctx.done():
            self.write(ctx.token)
            ctx.wait(self.o.write_every)
        cause = str(ctx.cause)
        if self.o.ignore_cancel > 0:
            # A work function that ignores its context: it keeps acting for a
            # while. Only the fencing token protects the resource from it.
            until = time.monotonic() + self.o.ignore_cancel
            while time.monotonic() < until:
                self.write(ctx.token)
                time.sleep(self.o.write_every)
            cause += "; ignored it for %gs" % self.o.ignore_cancel
        if self.o.unsafe_no_deadline and not self.stop.done():
            self.until_superseded(ctx.token)
            cause += "; kept working until another holder was seen"
        self.out.emit("stop", cause=cause)

    def until_superseded(self, token: int) -> None:
        """The control for the hard deadline: a leader that, once its term's
        context ended, goes on working until it reads the Lease and finds
        another holder (or the process is stopped). Reads that fail (a
        partition) leave it working."""
        other, done = threading.Event(), threading.Event()

        def read() -> None:
            while not done.is_set() and not self.stop.done():
                try:
                    if self.client.get(timeout=self.o.retry_period).record.holder != self.o.id:
                        other.set()
                        return
                except errors.APIError:
                    pass
                done.wait(self.o.retry_period)

        reader = threading.Thread(target=read, name="candidate-superseded", daemon=True)
        reader.start()
        try:
            while not other.is_set() and not self.stop.done():
                self.write(token)
                if self.stop.wait(self.o.write_every):
                    break
        finally:
            done.set()
            reader.join()


def _flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m leasehold.candidate", description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="elector", choices=["elector", "leasehold", "lock"],
                   help="elector (leasehold is a synonym) or lock")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--lease", required=True, help="name of the Lease")
    p.add_argument("--id", required=True, help="identity")
    p.add_argument("--lease-duration", type=parse_duration, default=15.0)
    p.add_argument("--renew-deadline", type=parse_duration, default=10.0)
    p.add_argument("--retry-period", type=parse_duration, default=2.0)
    p.add_argument("--release-on-cancel", type=parse_bool, default=True, nargs="?", const=True)
    p.add_argument("--clock-rate", type=float, default=1.0, help="rate of the candidate's monotonic clock (0.9: 10%% slow)")
    p.add_argument("--write-url", default="", help="while leading, POST writes to this fenced resource")
    p.add_argument("--write-every", type=parse_duration, default=0.05)
    p.add_argument("--hold", type=parse_duration, default=1.0, help="--impl lock: how long each acquisition holds")
    p.add_argument("--ignore-cancel", type=parse_duration, default=0.0,
                   help="the work keeps writing this long after its context ended (fencing tests)")
    p.add_argument("--unsafe-no-deadline", action="store_true",
                   help="control runs only, --impl elector: keep working after the term's context ends, "
                        "until a GET shows another holder (a leader without a hard deadline)")
    return p


def _api(kubeconfig: str):
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=kubeconfig)


def run(o, out: Emitter, stop: Context, counts_box: list) -> None:
    clock = RateClock(o.clock_rate) if o.clock_rate != 1 else None
    api = _api(o.kubeconfig)
    worker = Worker(o, out, stop, LeaseClient(api, o.namespace, o.lease))
    timing = dict(lease_duration=o.lease_duration, renew_deadline=o.renew_deadline, retry_period=o.retry_period)
    if o.impl in ("elector", "leasehold"):
        e = Elector(api, o.namespace, o.lease, o.id, release_on_stop=o.release_on_cancel, clock=clock, **timing)
        counts_box.append(e.counts)
        out.emit("ready")
        e.run(worker.term, stop=stop)
        return
    lk = Lock(api, o.namespace, o.lease, o.id, clock=clock, **timing)
    counts_box.append(lk.counts)
    out.emit("ready")
    while not stop.done():
        try:
            held = lk.acquire(stop=stop)
        except errors.TermEnded:
            break
        except errors.APIError as e:
            if e.permanent:
                raise
            stop.wait(o.retry_period)
            continue
        hold = Context(parents=[held.ctx], token=held.token)
        timer = threading.Timer(o.hold, hold.cancel, args=(errors.LeaseReleased("hold time over"),))
        timer.daemon = True
        timer.start()
        unlink = stop._subscribe(lambda: hold.cancel(errors.Stopped()))
        try:
            worker.term(hold)
        finally:
            timer.cancel()
            unlink()
            hold.detach()
            try:
                held.release()
            except errors.APIError:
                pass  # the lock was lost
        stop.wait(o.retry_period)


def main(argv: Optional[list] = None) -> int:
    try:
        o = _flags().parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and 2
    if o.clock_rate <= 0:
        print(f"candidate: --clock-rate must be positive, got {o.clock_rate}", file=sys.stderr)
        return 2
    if o.unsafe_no_deadline and o.impl == "lock":
        print("candidate: --unsafe-no-deadline applies only to --impl elector", file=sys.stderr)
        return 2
    out = Emitter(sys.stdout, o.id)
    stop = stop_on_signals(second_signal_default=False)
    counts_box: list = []
    usr1: "queue.SimpleQueue[int]" = queue.SimpleQueue()
    signal.signal(signal.SIGUSR1, lambda s, f: usr1.put(s))

    def report() -> None:
        while True:
            if usr1.get() < 0:
                return
            if counts_box:
                out.emit("requests", requests=counts_box[0].snapshot())

    reporter = threading.Thread(target=report, name="candidate-usr1", daemon=True)
    reporter.start()
    err = None
    try:
        run(o, out, stop, counts_box)
    except Exception as e:  # noqa: BLE001 - reported as an exit event
        err = e
    usr1.put(-1)
    reporter.join()
    if counts_box:
        out.emit("requests", requests=counts_box[0].snapshot())
    if err is not None:
        print(f"candidate: {err}", file=sys.stderr)
        out.emit("exit", err=str(err))
        return 1
    out.emit("exit")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is released, joined and reported: skip the interpreter's
    # teardown of the kubernetes client's modules (~0.1 s of CPU), which on
    # a small machine would compete with the candidate taking over.
    os._exit(code)
