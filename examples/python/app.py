#!/usr/bin/env python3
"""A leader-only worker with no election code (Python 3.8+, standard library).

Two ways to run it, both with Leasehold doing the election:

1. As the child of `leasehold run` (one process per replica):

       leasehold run --lease py --http :8080 -- python3 app.py

   leasehold starts it only while this replica leads and stops it (SIGTERM)
   when leadership ends. It leads for its whole life; the term's fencing
   token is in LEASEHOLD_TOKEN.

2. Next to a leasehold sidecar (deploy/sidecar): it runs all the time and
   asks the sidecar whether this pod leads, GET $LEASEHOLD_URL (default
   http://localhost:8080/leader), every POLL_SECONDS (default 1). It works
   only while the answer says "me": true. A loss is noticed up to one poll
   later, so pass the token to whatever you write to and let it reject
   older tokens.

Each unit of work prints one line "work <identity> <token> <unix ns>" to
stdout, and to the file WORK_LOG if set; "start" and "stop" lines mark a
term. WORK_SECONDS (default 0.1) is the time between units.
"""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

IDENTITY = os.environ.get("LEASEHOLD_IDENTITY") or os.environ.get("POD_NAME") or os.uname().nodename
WORK_LOG = os.environ.get("WORK_LOG")
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.1"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "1"))
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


def ask_sidecar():
    """Returns (leading, token, holder); (False, None, None) if unknown."""
    try:
        with urllib.request.urlopen(LEADER_URL, timeout=2) as resp:
            v = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"asking {LEADER_URL}: {e}", file=sys.stderr, flush=True)
        return False, None, None
    return bool(v.get("me")), v.get("token"), v.get("holder")


def run_with_sidecar():
    """Poll the sidecar; work only while it says this pod leads."""
    leading_token = None
    next_poll = 0.0
    leading = False
    while not stopping:
        now = time.monotonic()
        if now >= next_poll:
            leading, token, holder = ask_sidecar()
            next_poll = now + POLL_SECONDS
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
            time.sleep(min(WORK_SECONDS, max(0.0, next_poll - time.monotonic())))
        else:
            time.sleep(max(0.0, next_poll - time.monotonic()))
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
