"""Graceful shutdown on SIGTERM (what Kubernetes sends a pod) and SIGINT.

    stop = leasehold.stop_on_signals()
    elector.run(work, stop=stop)   # SIGTERM: work's ctx ends, run waits, releases, returns

The signal handler itself only puts the signal number on a reentrant queue
(``queue.SimpleQueue``); a helper thread ends the context. So a signal that
arrives while the main thread holds one of leasehold's locks cannot deadlock,
and the handoff to a follower takes milliseconds instead of a lease duration.
"""

from __future__ import annotations

import queue
import signal
import threading
from typing import Iterable, Optional

from .context import Context
from .errors import Stopped


class SignalReceived(Stopped):
    """The cause of a context ended by stop_on_signals; ``signum`` says which."""

    def __init__(self, signum: int):
        self.signum = signum
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        super().__init__(f"leasehold: stopped by {name}")


def stop_on_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
                    ctx: Optional[Context] = None, second_signal_default: bool = True) -> Context:
    """Returns a Context (ctx, or a new one) that ends with SignalReceived at
    the first of signals. With second_signal_default (the default), the
    previous handlers are restored after the first signal, so a second one
    acts as it would have without this helper (Ctrl-C twice interrupts a
    work function that ignores its context). Must be called from the main
    thread (Python delivers signals there)."""
    ctx = ctx if ctx is not None else Context()
    sigs = list(signals)
    q: "queue.SimpleQueue[int]" = queue.SimpleQueue()
    previous = {}

    def handler(signum, frame):  # runs in the main thread between bytecodes
        q.put(signum)  # reentrant: safe even inside another put
        if second_signal_default:
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    for s in sigs:
        previous[s] = signal.signal(s, handler)

    def relay() -> None:
        signum = q.get()
        ctx.cancel(SignalReceived(signum))

    threading.Thread(target=relay, name="leasehold-signals", daemon=True).start()
    return ctx
