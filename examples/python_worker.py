#!/usr/bin/env python3
"""A wp-lite worker in Python, built on the client library in clients/python (wp_lite).

It long-polls for jobs, runs up to CONCURRENCY of them at once with heartbeats while they
run, reports outcomes in ack batches, and stops cleanly on Ctrl-C / SIGTERM: jobs in hand
get SHUTDOWN_TIMEOUT seconds to finish, those still unfinished are released (back in the
queue at once, the attempt not counted), a waiting long poll is simply abandoned.

    WP_LITE_URL=http://127.0.0.1:8000 WP_LITE_TOKEN=$(wp-lite admin-token) \
    JOB_TYPES=demo.sleep python3 examples/python_worker.py

JOB_TYPES (comma-separated; empty = any type), WORKER_ID, LEASE_SECONDS, WAIT_MS,
CONCURRENCY and SHUTDOWN_TIMEOUT are optional. The demo handler understands the
`demo.sleep` input: {"ms": 100, "fail": "retryable"|"fatal"}; `"fail_first": true` fails
only the first attempt (retryably). Replace `handle` with yours.

Runs from a clone without installing anything (it puts clients/python on sys.path);
with `pip install ./clients/python` the sys.path line is not needed.
"""

import logging
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))

from wp_lite import Client, RetryableError, Worker  # noqa: E402

TOKEN = os.environ.get("WP_LITE_TOKEN") or os.environ.get("WP_LITE_WORKER_TOKEN", "")
TYPES = [t for t in os.environ.get("JOB_TYPES", "").split(",") if t]
WORKER_ID = os.environ.get("WORKER_ID", f"py-{socket.gethostname()}-{os.getpid()}")

worker = Worker(
    Client(os.environ.get("WP_LITE_URL", "http://127.0.0.1:8000"), TOKEN),
    worker_id=WORKER_ID,
    job_types=TYPES or None,
    concurrency=int(os.environ.get("CONCURRENCY", "4")),
    lease_seconds=int(os.environ.get("LEASE_SECONDS", "60")),
    wait_ms=int(os.environ.get("WAIT_MS", "25000")),
    shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "30")),
)


@worker.handler("*")  # every type leased (JOB_TYPES); use @worker.handler("demo.sleep") for one
def handle(job):
    """Your work goes here. Return a dict (the result) or None, or raise."""
    inp = job["input"]
    time.sleep(inp.get("ms", 0) / 1000)
    if inp.get("fail") == "fatal":
        raise ValueError("asked to fail")
    if inp.get("fail") == "retryable" or (inp.get("fail_first") and job["attempts"] == 1):
        raise RetryableError("temporary trouble, try again")
    return {"handled_by": WORKER_ID}


@worker.on_finished
def report(f):
    if f.ok:
        print(f"job {f.job_id} {'completed' if f.outcome == 'complete' else 'failed'}", flush=True)
    else:
        print(f"job {f.job_id}: {f.refused}, result dropped", flush=True)


if __name__ == "__main__":
    if not TOKEN:
        sys.exit("set WP_LITE_TOKEN (or WP_LITE_WORKER_TOKEN)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    print(f"worker {WORKER_ID} polling {worker.client.base_url} for {TYPES or 'any type'}", flush=True)
    worker.run()
    print(f"worker {WORKER_ID} stopped", flush=True)
