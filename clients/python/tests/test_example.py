"""examples/python_worker.py (built on this library) keeps the contract tests/examples.rs
relies on: WP_LITE_URL / WP_LITE_TOKEN / JOB_TYPES / WORKER_ID / WAIT_MS, a line per
outcome on stdout, retryable vs fatal failures, and a clean exit 0 on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import unittest
from typing import List

from .support import ADMIN, PACKAGE_ROOT, PYTHON, ServerTestCase, python_env, spawn, stop_process, wait_for

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(PACKAGE_ROOT)), "examples", "python_worker.py")


class Example(ServerTestCase):
    def test_the_example_drains_jobs_and_stops_cleanly_on_sigint(self) -> None:
        if not os.path.isfile(EXAMPLE):
            raise unittest.SkipTest(f"{EXAMPLE} is not there (not a checkout of the repository)")
        n = 60
        ordinary: List[str] = []
        fail_first: List[str] = []
        fatal = ""
        for i in range(n):
            if i == 30:
                fatal = self.admin.enqueue("py.demo", {"fail": "fatal"}, max_attempts=3).id
            elif i % 20 == 7:
                fail_first.append(self.admin.enqueue("py.demo", {"fail_first": True}, max_attempts=3).id)
            else:
                ordinary.append(self.admin.enqueue("py.demo", {"ms": i % 3}, max_attempts=3).id)

        env = python_env(
            WP_LITE_URL=self.server.base_url,
            WP_LITE_TOKEN=ADMIN,
            JOB_TYPES="py.demo",
            WORKER_ID="py-example-test",
            WAIT_MS="2000",
        )
        env.pop("PYTHONPATH", None)  # the example finds the library by itself
        env.pop("LEASE_SECONDS", None)
        proc = spawn(
            [PYTHON, EXAMPLE],
            cwd=self.server.directory,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out: List[str] = []
        err: List[str] = []

        def read(stream: object, into: List[str]) -> None:
            for raw in stream:  # type: ignore[attr-defined]
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))

        readers = [threading.Thread(target=read, args=(s, into), daemon=True) for s, into in ((proc.stdout, out), (proc.stderr, err))]
        for t in readers:
            t.start()

        def cleanup() -> None:
            stop_process(proc, signal.SIGKILL)
            for t in readers:
                t.join(5)
            for s in (proc.stdout, proc.stderr):
                if s is not None:
                    s.close()

        self.addCleanup(cleanup)

        def drained() -> bool:
            self.assertIsNone(proc.poll(), "\n".join(err))
            c = self.counts("py.demo")
            queued = self.admin.list_jobs(type="py.demo", status="queued", limit=100).items
            waiting_retry = all(j.id in fail_first and j["attempts"] == 1 and j["last_error"] for j in queued)
            return c.get("leased") == 0 and c.get("failed") == 1 and c["succeeded"] + c["queued"] == n - 1 and waiting_retry

        wait_for(drained, 60, lambda: "the example to drain the queue: " + "\n".join(out + err))
        for job_id in ordinary:
            j = self.admin.get(job_id)
            self.assertEqual((j["status"], j["attempts"]), ("succeeded", 1))
            self.assertEqual(j["result"]["handled_by"], "py-example-test")
        j = self.admin.get(fatal)
        self.assertEqual((j["status"], j["attempts"]), ("failed", 1))
        self.assertIn("asked to fail", j["last_error"])
        for job_id in fail_first:
            j = self.admin.get(job_id)
            self.assertEqual((j["status"], j["attempts"], j["last_error"]), ("queued", 1, "temporary trouble, try again"))
            names = [e["event"] for e in self.admin.events(job_id)]
            self.assertEqual(names[:2], ["queued", "leased"])
            self.assertGreaterEqual(len(names), 3)

        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(20), 0, "\n".join(out + err))
        self.assertLess(time.monotonic() - t0, 5.0)
        for t in readers:
            t.join(5)
        self.assertTrue(out and "stopped" in out[-1], out)
        self.assertNotIn("Traceback", "\n".join(err))
        completed = [line for line in out if line.endswith(" completed")]
        self.assertGreaterEqual(len(completed), len(ordinary))
        self.assertIn(f"job {fatal} failed", out)
