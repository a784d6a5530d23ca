"""Context: a cancellation signal handed to guarded work.

A Context is like a ``threading.Event`` that is set once, with a reason:
``ctx.done()`` says whether it ended, ``ctx.wait(timeout)`` blocks until it
does (True) or the timeout passes (False), ``ctx.cause`` is the exception
that says why (a leasehold.errors.TermEnded subclass for leadership and
locks), ``ctx.check()`` raises it, and ``ctx.token`` is the fencing token of
the term it belongs to (None for a plain stop context).

Contexts are safe for concurrent use. A context derived from parents ends
when any parent ends, with that parent's cause. Nothing outside leasehold
runs when a context ends: the internal links that propagate an end are the
only callbacks, so no user code can delay the hard deadline.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, List, Optional

from .errors import Stopped


class Context:
    """A one-shot cancellation signal with a cause and an optional fencing
    token. ``Context()`` makes a root you cancel yourself (a stop signal for
    Elector.run or Lock.acquire); leasehold hands work a derived one."""

    def __init__(self, parents: Iterable["Context"] = (), token: Optional[int] = None):
        self._mu = threading.Lock()
        self._event = threading.Event()
        self._cause: Optional[BaseException] = None
        self._subs: List[Callable[[], None]] = []
        self.token = token
        self._unlinks = []
        for p in parents:
            if p is None:
                continue
            self._unlinks.append(p._subscribe(lambda p=p: self.cancel(p.cause)))

    # -- reading ------------------------------------------------------------

    def done(self) -> bool:
        """True once the context has ended."""
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the context ends (returns True) or timeout seconds
        pass (returns False). Use it as an interruptible sleep in work
        loops: ``while not ctx.wait(1.0): do_one_unit(ctx.token)``."""
        return self._event.wait(timeout)

    sleep = wait

    @property
    def cause(self) -> Optional[BaseException]:
        """Why the context ended (an exception instance), None while live."""
        with self._mu:
            return self._cause

    def check(self) -> None:
        """Raises the cause if the context has ended; call it before acting."""
        c = self.cause
        if c is not None:
            raise c

    def __bool__(self) -> bool:  # a context is always a real object
        return True

    # -- ending ---------------------------------------------------------------

    def cancel(self, cause: Optional[BaseException] = None) -> bool:
        """Ends the context with cause (default leasehold.errors.Stopped) and
        reports whether this call ended it (the first cause wins)."""
        with self._mu:
            if self._cause is not None:
                return False
            self._cause = cause if cause is not None else Stopped()
            subs, self._subs = self._subs, []
            self._event.set()
        for fn in subs:
            fn()
        return True

    def detach(self) -> None:
        """Stops following the parents (without ending this context). Used
        when a derived context is no longer needed, to free the links."""
        for u in self._unlinks:
            u()
        self._unlinks = []

    def _subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Calls fn (internal, must not block) when the context ends, at once
        if it has ended. Returns a function that unsubscribes."""
        with self._mu:
            if self._cause is None:
                self._subs.append(fn)

                def unsubscribe() -> None:
                    with self._mu:
                        try:
                            self._subs.remove(fn)
                        except ValueError:
                            pass

                return unsubscribe
        fn()
        return lambda: None

    def __repr__(self) -> str:
        return f"<leasehold.Context token={self.token} cause={self.cause!r}>"


class Signal:
    """A change counter with a condition: waiters remember the generation they
    saw and wait for a later one. Never blocks the notifier."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._gen = 0

    def gen(self) -> int:
        with self._cond:
            return self._gen

    def notify(self) -> None:
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    def wait(self, gen: int, timeout: Optional[float]) -> bool:
        """Waits until the generation moves past gen (True) or timeout
        seconds pass (False); timeout None waits without limit."""
        with self._cond:
            if self._gen != gen:
                return True
            if timeout is not None and timeout <= 0:
                return False
            self._cond.wait(timeout)
            return self._gen != gen
