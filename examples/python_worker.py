#!/usr/bin/env python3
"""A wp-lite worker in Python using only the standard library.

It long-polls for jobs, heartbeats while one runs, completes it or fails it (retryable or
not), and stops cleanly on Ctrl-C / SIGTERM: a job in hand is finished first; a waiting
long poll is simply abandoned.

    WP_LITE_URL=http://127.0.0.1:8000 WP_LITE_TOKEN=$(wp-lite admin-token) \
    JOB_TYPES=demo.sleep python3 examples/python_worker.py

The demo handler understands the `demo.sleep` input: {"ms": 100, "fail": "retryable"|"fatal"};
`"fail_first": true` fails only the first attempt (retryably). Replace `handle` with yours.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

BASE = os.environ.get("WP_LITE_URL", "http://127.0.0.1:8000").rstrip("/")
TOKEN = os.environ.get("WP_LITE_TOKEN") or os.environ.get("WP_LITE_WORKER_TOKEN", "")
TYPES = [t for t in os.environ.get("JOB_TYPES", "").split(",") if t]
WORKER_ID = os.environ.get("WORKER_ID", f"py-{socket.gethostname()}-{os.getpid()}")
LEASE_SECONDS = int(os.environ.get("LEASE_SECONDS", "60"))
WAIT_MS = int(os.environ.get("WAIT_MS", "25000"))


class Retryable(Exception):
    """A failure worth another attempt."""


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


def call(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read()).get("error", {})
        except ValueError:
            err = {}
        raise ApiError(e.code, err.get("code", "?"), err.get("message", e.reason)) from None


def handle(job):
    """Your work goes here. Return a dict (the result) or raise."""
    inp = job["input"]
    time.sleep(inp.get("ms", 0) / 1000)
    if inp.get("fail") == "fatal":
        raise ValueError("asked to fail")
    if inp.get("fail") == "retryable" or (inp.get("fail_first") and job["attempts"] == 1):
        raise Retryable("temporary trouble, try again")
    return {"handled_by": WORKER_ID}


class Heartbeat(threading.Thread):
    """Extends the lease every third of it; notices cancel and lost leases."""

    def __init__(self, job):
        super().__init__(daemon=True)
        self.job, self.stop, self.lost = job, threading.Event(), None

    def run(self):
        while not self.stop.wait(LEASE_SECONDS / 3):
            try:
                call("POST", f"/v1/worker/jobs/{self.job['job_id']}/heartbeat",
                     {"worker_id": WORKER_ID, "lease_seconds": LEASE_SECONDS,
                      "lease_token": self.job["lease_token"]})
            except ApiError as e:
                if e.status == 409:
                    self.lost = e.code  # job_canceled or lease_lost: stop caring about it
                    return
            except OSError:
                pass


stopping = False
idle = False


def on_signal(signum, _frame):
    global stopping
    stopping = True
    if idle:
        raise KeyboardInterrupt  # abandon the long poll; nothing is in hand


def run_job(job):
    beat = Heartbeat(job)
    beat.start()
    fence = {"worker_id": WORKER_ID, "lease_token": job["lease_token"]}
    try:
        result = handle(job)
        outcome = ("complete", {**fence, "result": result})
    except Retryable as e:
        outcome = ("fail", {**fence, "error": str(e), "retryable": True})
    except Exception as e:  # noqa: BLE001 - any other error is final
        outcome = ("fail", {**fence, "error": f"{type(e).__name__}: {e}", "retryable": False})
    finally:
        beat.stop.set()
    if beat.lost:
        print(f"job {job['job_id']}: {beat.lost}, result dropped", flush=True)
        return
    try:
        call("POST", f"/v1/worker/jobs/{job['job_id']}/{outcome[0]}", outcome[1])
        print(f"job {job['job_id']} {'completed' if outcome[0] == 'complete' else 'failed'}",
              flush=True)
    except ApiError as e:
        print(f"job {job['job_id']}: {e}", flush=True)


def main():
    global idle
    if not TOKEN:
        sys.exit("set WP_LITE_TOKEN (or WP_LITE_WORKER_TOKEN)")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"worker {WORKER_ID} polling {BASE} for {TYPES or 'any type'}", flush=True)
    backoff = 0.5
    while not stopping:
        try:
            idle = True
            got = call("POST", "/v1/worker/jobs/lease",
                       {"worker_id": WORKER_ID, "job_types": TYPES or None, "limit": 1,
                        "lease_seconds": LEASE_SECONDS, "wait_ms": WAIT_MS},
                       timeout=WAIT_MS / 1000 + 30)
            idle = False
            backoff = 0.5
        except KeyboardInterrupt:
            break
        except (ApiError, OSError) as e:
            idle = False
            print(f"lease failed: {e}; retrying in {backoff:.1f} s", flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10)
            continue
        for job in got["jobs"]:
            run_job(job)
    print(f"worker {WORKER_ID} stopped", flush=True)


if __name__ == "__main__":
    main()
