#!/usr/bin/env python3
"""A leader-only worker that elects itself in-process with the leasehold
library (python/leasehold; needs the `kubernetes` client).

    PYTHONPATH=python python3 examples/python/inprocess.py      # uses $KUBECONFIG, or in-cluster

Every replica runs it; only the one that leads the Lease $LEASE_NAME (default
"py-inprocess") in $NAMESPACE (default "default") works. Its work gets a
context that ends when leadership ends, at the latest at the hard deadline,
and the term's fencing token, which it passes along with every unit of work.
On SIGTERM (what Kubernetes sends a pod) the work stops, the lease is
released and a follower takes over at once; the process exits 0.

Each unit of work prints "work <identity> <token> <unix ns>" to stdout, and
to the file $WORK_LOG if set; "start" and "stop" lines mark a term (the same
format as app.py). $WORK_SECONDS (default 0.1) is the time between units;
$LEASE_DURATION, $RENEW_DEADLINE and $RETRY_PERIOD (seconds) tune the timing.
"""

import logging
import os
import sys
import time

import kubernetes

import leasehold

WORK_LOG = os.environ.get("WORK_LOG")
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.1"))


def record(what, identity, token):
    line = f"{what} {identity} {token} {time.time_ns()}"
    print(line, flush=True)
    if WORK_LOG:
        with open(WORK_LOG, "a") as f:
            f.write(line + "\n")


def api_client():
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    elector = leasehold.Elector(
        api_client(),
        os.environ.get("NAMESPACE", "default"),
        os.environ.get("LEASE_NAME", "py-inprocess"),
        # identity: $POD_NAME, else the hostname
        lease_duration=float(os.environ.get("LEASE_DURATION", "15")),
        renew_deadline=float(os.environ.get("RENEW_DEADLINE", "10")),
        retry_period=float(os.environ.get("RETRY_PERIOD", "2")),
    )

    def work(ctx):
        """Runs only while this replica leads; returns when ctx ends."""
        record("start", elector.identity, ctx.token)
        while not ctx.done():
            # Real code hands ctx.token to its storage, which rejects writes
            # carrying a token older than one it has seen.
            record("work", elector.identity, ctx.token)
            ctx.wait(WORK_SECONDS)
        record("stop", elector.identity, ctx.token)
        logging.info("stopped working: %s", ctx.cause)

    # SIGTERM/SIGINT end the run: work stops, the lease is released, run returns.
    elector.run(work, stop=leasehold.stop_on_signals())
    return 0


if __name__ == "__main__":
    sys.exit(main())
