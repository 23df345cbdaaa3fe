"""A worker module for the command-line tests: ``python -m wp_lite worker tests.worker_app:worker``.

The client comes from WP_LITE_URL / WP_LITE_TOKEN (the Worker is built without one).
Handler ``app.sleep`` sleeps ``input.ms`` and prints a line per start and per reported
outcome, so the test can see which jobs were in hand.
"""

import os
import sys

from wp_lite import Finished, LeasedJob, Worker

worker = Worker(
    concurrency=int(os.environ.get("CONCURRENCY", "4")),
    lease_seconds=int(os.environ.get("LEASE_SECONDS", "30")),
    wait_ms=1000,
    shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "30")),
)


def say(line: str) -> None:
    # One write per line: print() from several threads can interleave text and newline.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@worker.handler("app.sleep")
def sleep(job: LeasedJob) -> dict:
    say(f"started {job.id}")
    # Sleeps, but wakes up when the job is no longer ours (canceled, lost, given back).
    job.cancelled.wait(job["input"].get("ms", 0) / 1000)
    return {"slept_ms": job["input"].get("ms", 0)}


@worker.on_finished
def report(f: Finished) -> None:
    say(f"finished {f.job_id} {f.outcome} ok={f.ok}")
