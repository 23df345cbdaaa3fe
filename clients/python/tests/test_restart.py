"""A worker that outlives its server: serve is killed mid-run and started again on the
same database file and port; every job still succeeds."""

from __future__ import annotations

import collections
import shutil
import signal
import tempfile
import threading
import time
import unittest
from typing import Dict, List

from .support import Server, binary, wait_for

from wp_lite import LeasedJob, Worker


class ServerRestart(unittest.TestCase):
    def setUp(self) -> None:
        binary()
        self.directory = tempfile.mkdtemp(prefix="wp-lite-py-restart-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.servers: List[Server] = []
        self.addCleanup(lambda: [s.stop(signal.SIGKILL) for s in self.servers])

    def serve(self, port: int = 0) -> Server:
        s = Server(self.directory, port=port).start()
        self.servers.append(s)
        return s

    def succeeded(self, server: Server) -> int:
        with server.admin() as admin:
            for q in admin.queues():
                if q["type"] == "rs.job":
                    return int(q["counts"]["succeeded"])
        return 0

    def test_the_worker_survives_a_server_restart(self) -> None:
        n = 400
        first = self.serve()
        client = first.worker_client()
        self.addCleanup(client.close)
        ids = [j.id for j in client.enqueue_batch([{"type": "rs.job", "input": {"i": i}} for i in range(n)])]

        calls: Dict[str, int] = collections.Counter()
        lock = threading.Lock()
        worker = Worker(client, worker_id="survivor", concurrency=4, lease_seconds=6, wait_ms=500)

        @worker.handler("rs.job")
        def handle(job: LeasedJob) -> Dict[str, int]:
            time.sleep(0.01)
            with lock:
                calls[job.id] += 1
            return {"i": job["input"]["i"]}

        errors: List[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        def stop() -> None:
            worker.stop()
            t.join(30)

        self.addCleanup(stop)

        with self.assertLogs("wp_lite", level="WARNING") as logs:
            wait_for(lambda: self.succeeded(first) >= n // 4, 30, "a quarter of the jobs done")
            first.stop(signal.SIGKILL)  # a crash, with jobs in hand and acks in flight
            time.sleep(1.0)  # the outage itself (nothing to poll for)
            second = self.serve(port=first.port)
            self.assertEqual(second.base_url, first.base_url)
            wait_for(lambda: self.succeeded(second) == n, 60, "every job to succeed after the restart")
            worker.stop()
            t.join(30)
        self.assertTrue(any("lease failed; retrying" in m for m in logs.output), logs.output)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        self.assertEqual(set(calls), set(ids))
        with second.admin() as admin:
            jobs = list(admin.iter_jobs(type="rs.job"))
            counts = next(q["counts"] for q in admin.queues() if q["type"] == "rs.job")
        self.assertEqual(counts, {"queued": 0, "leased": 0, "succeeded": n, "failed": 0, "canceled": 0})
        self.assertTrue(all(j["result"] == {"i": j["input"]["i"]} for j in jobs))
        # At-least-once: a job runs again only if its lease was lost in the crash.
        again = [j for j in jobs if j["attempts"] > 1]
        self.assertLessEqual(len(again), 100, again[:3])

    def test_a_lease_lost_in_a_long_outage_reaches_the_handler(self) -> None:
        first = self.serve()
        client = first.worker_client(retries=0)
        self.addCleanup(client.close)
        job_id = client.enqueue("rs.lost", {}).id
        reasons: List[str] = []
        started = threading.Event()
        worker = Worker(client, concurrency=1, lease_seconds=2, wait_ms=200)

        @worker.handler("rs.lost")
        def handle(job: LeasedJob) -> Dict[str, int]:
            if job["attempts"] == 1:
                started.set()
                if job.cancelled.wait(30):
                    reasons.append(str(job.cancel_reason))
            return {"attempt": job["attempts"]}

        t = threading.Thread(target=worker.run, daemon=True)
        t.start()

        def stop() -> None:
            worker.stop()
            t.join(30)

        self.addCleanup(stop)
        self.assertTrue(started.wait(15))
        first.stop(signal.SIGKILL)
        time.sleep(3.0)  # the outage outlasts the 2 s lease
        second = self.serve(port=first.port)
        wait_for(lambda: reasons, 20, "the handler to learn its lease is gone")
        self.assertIn(reasons[0], ("lease_lost", "job_not_leased"))
        with second.admin() as admin:
            done = wait_for(lambda: (lambda j: j["status"] == "succeeded" and j)(admin.get(job_id)), 20, "the second attempt")
        self.assertEqual((done["attempts"], done["result"]), (2, {"attempt": 2}))  # the first result was dropped
