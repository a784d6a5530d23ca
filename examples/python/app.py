#!/usr/bin/env python3
"""A leader-only worker with no election code (Python 3.8+, standard library).

Two ways to run it, both with Leasehold doing the election:

1. As the child of `leasehold run` (one process per replica):

       leasehold run --lease py --http :8080 -- python3 app.py

   leasehold starts it only while this replica leads and stops it (SIGTERM)
   when leadership ends. It leads for its whole life; the term's fencing
   token is in LEASEHOLD_TOKEN.

2. Next to a leasehold sidecar (deploy/sidecar): it runs all the time and
   follows the sidecar's stream GET $LEASEHOLD_URL/watch (default
   http://localhost:8080/leader/watch), one JSON line per change. It works
   only while the latest line says "me": true; the sidecar pushes
   "me": false the moment its term ends, so the app stops within
   milliseconds, not a poll interval later. If the stream breaks, the app
   stops working at once and reconnects every RETRY_SECONDS (default 1).
   Pass the token to whatever you write to and let it reject older tokens:
   that also covers a unit of work already under way when the term ends.

Each unit of work prints one line "work <identity> <token> <unix ns>" to
stdout, and to the file WORK_LOG if set; "start" and "stop" lines mark a
term. WORK_SECONDS (default 0.1) is the time between units.
"""

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

IDENTITY = os.environ.get("LEASEHOLD_IDENTITY") or os.environ.get("POD_NAME") or os.uname().nodename
WORK_LOG = os.environ.get("WORK_LOG")
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.1"))
RETRY_SECONDS = float(os.environ.get("RETRY_SECONDS", "1"))
LEADER_URL = os.environ.get("LEASEHOLD_URL", "http://localhost:8080/leader")

stopping = False


def on_term(signum, frame):
    global stopping
    stopping = True


def record(what, identity, token):
    line = f"{what} {identity} {token} {time.time_ns()}"
    print(line, flush=True)
    if WORK_LOG:
        with open(WORK_LOG, "a") as f:
            f.write(line + "\n")


def work_once(identity, token):
    """One unit of leader-only work. Real code hands token to its storage."""
    record("work", identity, token)


def run_as_child(token):
    """Child of `leasehold run`: we lead until SIGTERM."""
    record("start", IDENTITY, token)
    while not stopping:
        work_once(IDENTITY, token)
        time.sleep(WORK_SECONDS)
    record("stop", IDENTITY, token)


class Leadership:
    """The sidecar's latest word on whether this pod leads, kept current by
    a thread that follows GET LEADER_URL/watch."""

    def __init__(self):
        self.cond = threading.Condition()
        self.leading = False
        self.token = None
        self.holder = None

    def set(self, leading, token, holder):
        with self.cond:
            self.leading, self.token, self.holder = leading, token, holder
            self.cond.notify_all()

    def follow(self):
        """Runs on a daemon thread for the life of the process."""
        url = LEADER_URL.rstrip("/") + "/watch"
        while not stopping:
            try:
                with urllib.request.urlopen(url, timeout=None) as resp:
                    for raw in resp:
                        v = json.loads(raw)
                        self.set(bool(v.get("me")), v.get("token"), v.get("holder"))
            except (urllib.error.URLError, OSError, ValueError) as e:
                print(f"following {url}: {e}", file=sys.stderr, flush=True)
            # The stream ended: nothing is known, so this pod does not lead.
            self.set(False, None, None)
            time.sleep(RETRY_SECONDS)


def run_with_sidecar():
    """Work only while the sidecar's stream says this pod leads."""
    state = Leadership()
    threading.Thread(target=state.follow, daemon=True).start()
    leading_token = None
    while not stopping:
        with state.cond:
            leading, token, holder = state.leading, state.token, state.holder
        if leading and token != leading_token:
            if leading_token is not None:
                record("stop", IDENTITY, leading_token)
            leading_token = token
            record("start", IDENTITY, token)
        elif not leading and leading_token is not None:
            record("stop", IDENTITY, leading_token)
            leading_token = None
            print(f"following {holder or '(nobody)'}", flush=True)
        if leading:
            work_once(IDENTITY, leading_token)
            with state.cond:
                # Wake at once when the sidecar says the term ended.
                state.cond.wait_for(lambda: not state.leading or stopping, timeout=WORK_SECONDS)
        else:
            with state.cond:
                state.cond.wait_for(lambda: state.leading or stopping, timeout=RETRY_SECONDS)
    if leading_token is not None:
        record("stop", IDENTITY, leading_token)


def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    token = os.environ.get("LEASEHOLD_TOKEN")
    if token:
        run_as_child(token)
    else:
        run_with_sidecar()
    return 0


if __name__ == "__main__":
    sys.exit(main())
