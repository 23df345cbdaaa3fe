"""The Worker against a real server: draining, heartbeats, cancellation, failures and
the graceful stop, with the worker running in a thread of the test process."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from typing import Any, Dict, List

from .support import ServerTestCase, wait_for

from wp_lite import (
    Client,
    Finished,
    JobNotFound,
    LeasedJob,
    RetryableError,
    Unauthorized,
    Worker,
    current_job,
)


class WorkerTests(ServerTestCase):
    def setUp(self) -> None:
        self.type = f"wk.{uuid.uuid4().hex[:8]}"
        self.client = self.server.worker_client()
        self.addCleanup(self.client.close)

    def start(self, worker: Worker) -> threading.Thread:
        """Runs the worker in a thread; the cleanup stops it (also when a test fails)."""
        errors: List[BaseException] = []

        def run() -> None:
            try:
                worker.run()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=run, name="worker-under-test", daemon=True)
        t.start()

        def stop() -> None:
            worker.stop()
            t.join(60)

        self.addCleanup(stop)
        t.errors = errors  # type: ignore[attr-defined]
        return t

    def test_concurrency_4_drains_2000_jobs_each_exactly_once(self) -> None:
        n = 2000
        for start in range(0, n, 1000):
            self.client.enqueue_batch([{"type": self.type, "input": {"i": i}} for i in range(start, start + 1000)])
        calls: Dict[str, int] = collections.Counter()
        threads = set()
        lock = threading.Lock()
        worker = Worker(self.client, worker_id="drain-4", concurrency=4, wait_ms=500, lease_seconds=30)

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> Dict[str, Any]:
            with lock:
                calls[job.id] += 1
                threads.add(threading.current_thread().name)
            return {"i": job["input"]["i"]}

        t = self.start(worker)
        wait_for(lambda: self.counts(self.type).get("succeeded") == n, 60, "2000 jobs to succeed")
        worker.stop()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertEqual(t.errors, [])  # type: ignore[attr-defined]

        self.assertEqual(len(calls), n)
        self.assertEqual(set(calls.values()), {1}, "every handler ran exactly once")
        self.assertLessEqual(len(threads), 4)
        counts = self.counts(self.type)
        self.assertEqual(counts, {"queued": 0, "leased": 0, "succeeded": n, "failed": 0, "canceled": 0})
        jobs = list(self.admin.iter_jobs(type=self.type))
        self.assertEqual(len(jobs), n)
        self.assertTrue(all(j["status"] == "succeeded" and j["attempts"] == 1 for j in jobs))
        self.assertTrue(all(j["result"] == {"i": j["input"]["i"]} for j in jobs))
        q = {x["type"]: x for x in self.admin.queues()}[self.type]
        self.assertEqual(q["leases_expired_total"], 0)
        for j in jobs[:: n // 10]:
            self.assertEqual([e["event"] for e in self.admin.events(j.id)], ["queued", "leased", "succeeded"])

    def test_heartbeats_keep_a_handler_that_outlives_its_lease(self) -> None:
        job = self.client.enqueue(self.type, {})
        seen: List[LeasedJob] = []
        worker = Worker(self.client, concurrency=1, lease_seconds=2, wait_ms=200)

        @worker.handler(self.type)
        def slow(j: LeasedJob) -> Dict[str, Any]:
            seen.append(j)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not j.cancelled.is_set():
                time.sleep(0.05)
            return {"ran_s": 5}

        self.start(worker)
        done = wait_for(lambda: self.admin.get(job.id)["status"] == "succeeded" and self.admin.get(job.id), 20, "the slow job")
        self.assertEqual((done["attempts"], done["result"]), (1, {"ran_s": 5}))
        self.assertFalse(seen[0].cancelled.is_set())
        events = self.admin.events(job.id)
        names = [e["event"] for e in events]
        self.assertEqual(names, ["queued", "leased", "heartbeat", "succeeded"])
        beats = next(e for e in events if e["event"] == "heartbeat")
        self.assertGreaterEqual(beats["details"]["count"], 5)  # every 2/3 s for 5 s
        self.assertEqual(self.counts(self.type)["succeeded"], 1)

    def test_a_canceled_job_sets_the_handlers_flag(self) -> None:
        job = self.client.enqueue(self.type, {})
        started = threading.Event()
        outcome: Dict[str, Any] = {}
        finished: List[Finished] = []
        worker = Worker(self.client, concurrency=1, lease_seconds=3, wait_ms=200)

        @worker.handler(self.type)
        def wait_for_cancel(j: LeasedJob) -> Dict[str, Any]:
            outcome["current"] = current_job() is j
            started.set()
            outcome["flag"] = j.cancelled.wait(15)
            outcome["reason"] = j.cancel_reason
            return {"never": "stored"}

        worker.on_finished(finished.append)
        self.start(worker)
        self.assertTrue(started.wait(15))
        t0 = time.monotonic()
        self.admin.cancel(job.id)
        wait_for(lambda: "flag" in outcome, 10, "the handler to see the cancel")
        self.assertLess(time.monotonic() - t0, 3.0)  # the next heartbeat (every second) tells
        self.assertEqual(outcome, {"current": True, "flag": True, "reason": "job_canceled"})
        time.sleep(0.2)
        final = self.admin.get(job.id)
        self.assertEqual((final["status"], final["result"]), ("canceled", None))
        self.assertEqual(finished, [], "a canceled job's result is dropped, not reported")

    def test_outcomes_of_failures_and_bad_results(self) -> None:
        modes = ["ok", "retryable", "fatal", "list", "unserialisable", "none"]
        ids = {m: self.client.enqueue(self.type, {"mode": m}, max_attempts=3).id for m in modes}
        finished: Dict[str, Finished] = {}
        worker = Worker(self.client, concurrency=2, wait_ms=200)

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> Any:
            mode = job["input"]["mode"]
            if mode == "retryable":
                raise RetryableError("try later", details={"hint": 1})
            if mode == "fatal":
                raise ValueError("bad input")
            if mode == "list":
                return [1, 2]
            if mode == "unserialisable":
                return {"s": {1, 2}}
            if mode == "none":
                return None
            return {"done": True}

        worker.on_finished(lambda f: finished.__setitem__(f.job_id, f))
        self.start(worker)
        wait_for(lambda: len(finished) == len(modes), 20, "every outcome reported")
        jobs = {m: self.admin.get(i) for m, i in ids.items()}
        self.assertEqual((jobs["ok"]["status"], jobs["ok"]["result"]), ("succeeded", {"done": True}))
        self.assertEqual((jobs["none"]["status"], jobs["none"]["result"]), ("succeeded", None))
        r = jobs["retryable"]
        self.assertEqual((r["status"], r["attempts"], r["last_error"]), ("queued", 1, "try later"))
        self.assertEqual(finished[ids["retryable"]].status, "queued")
        f = jobs["fatal"]
        self.assertEqual((f["status"], f["last_error"]), ("failed", "ValueError: bad input"))
        self.assertIn("Traceback (most recent call last)", f["result"]["details"]["traceback"])
        self.assertIn("bad input", f["result"]["details"]["traceback"])
        self.assertEqual(jobs["list"]["status"], "failed")
        self.assertIn("not a dict or None", jobs["list"]["last_error"])
        self.assertEqual(jobs["unserialisable"]["status"], "failed")
        self.assertIn("not JSON", jobs["unserialisable"]["last_error"])
        self.assertTrue(all(x.ok for x in finished.values()))

    def test_a_result_the_server_refuses_fails_only_that_job(self) -> None:
        ids = [j.id for j in self.client.enqueue_batch([{"type": self.type, "input": {"deep": i == 3}} for i in range(8)])]
        finished: Dict[str, Finished] = {}
        worker = Worker(self.client, concurrency=1, prefetch=7, wait_ms=200, ack_interval=0.2)

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> Dict[str, Any]:
            if job["input"]["deep"]:
                deep: Dict[str, Any] = {}
                for _ in range(80):  # the server takes at most 64 levels
                    deep = {"d": deep}
                return deep
            return {"ok": True}

        worker.on_finished(lambda f: finished.__setitem__(f.job_id, f))
        with self.assertLogs("wp_lite", level="WARNING") as logs:
            self.start(worker)
            wait_for(lambda: len(finished) == 8, 20, "every outcome reported")
        self.assertTrue(any("ack batch refused" in m for m in logs.output), logs.output)
        jobs = [self.admin.get(i) for i in ids]
        self.assertEqual([j["status"] for j in jobs], ["succeeded"] * 3 + ["failed"] + ["succeeded"] * 4)
        self.assertIn("refused the handler's result", jobs[3]["last_error"])

    def test_graceful_stop_finishes_what_it_can_and_gives_back_the_rest(self) -> None:
        quick = self.client.enqueue(self.type, {"ms": 300}, priority=0).id
        slow = self.client.enqueue(self.type, {"ms": 60_000}, priority=0).id
        untouched = self.client.enqueue(self.type, {"ms": 0}, priority=9).id
        running: Dict[str, LeasedJob] = {}
        worker = Worker(self.client, concurrency=2, wait_ms=200, shutdown_timeout=1.0, lease_seconds=30)

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> Dict[str, Any]:
            running[job.id] = job
            job.cancelled.wait(job["input"]["ms"] / 1000)
            return {"ms": job["input"]["ms"]}

        t = self.start(worker)
        wait_for(lambda: len(running) == 2, 15, "both jobs to start")
        t0 = time.monotonic()
        worker.stop()
        t.join(15)
        took = time.monotonic() - t0
        self.assertFalse(t.is_alive())
        self.assertLess(took, 4.0)  # 1 s of grace, then give back and return
        self.assertEqual(self.admin.get(quick)["status"], "succeeded")
        self.assertTrue(running[slow].cancelled.is_set())
        self.assertEqual(running[slow].cancel_reason, "shutdown")
        self.assertTrue(running[slow].stopping.is_set())
        # Released before run() returned: queued, available at once, the attempt not
        # counted; neither leased nor failed.
        back = self.admin.get(slow)
        self.assertEqual((back["status"], back["attempts"], back["lease_owner"]), ("queued", 0, None))
        self.assertLessEqual(back["available_at"], back["updated_at"])
        self.assertEqual([e["event"] for e in self.admin.events(slow)], ["queued", "leased", "released"])
        u = self.admin.get(untouched)
        self.assertEqual((u["status"], u["attempts"]), ("queued", 0))

    def test_a_server_without_release_gets_the_lease_shortened_instead(self) -> None:
        class OldServerClient(Client):
            """Asks for a route the server does not have, as a server older than
            release would answer it: 404 not_found."""

            def release(self, job_id: str, worker_id: str, lease_token: Any = None) -> Any:
                return self.request("POST", f"/v1/worker/jobs/{job_id}/no-release-here", {"worker_id": worker_id})

        old = OldServerClient(self.server.base_url, self.client.token)
        self.addCleanup(old.close)
        ids = [j.id for j in old.enqueue_batch([{"type": self.type, "input": {}}] * 2)]
        started = threading.Event()
        worker = Worker(old, concurrency=1, prefetch=1, wait_ms=200, shutdown_timeout=0.2)

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> None:
            started.set()
            job.cancelled.wait(60)

        with self.assertLogs("wp_lite", level="WARNING") as logs:
            t = self.start(worker)
            self.assertTrue(started.wait(15))
            wait_for(lambda: self.counts(self.type).get("leased") == 2, 10, "both jobs leased")
            worker.stop()
            t.join(15)
        self.assertEqual(sum("no release route" in m for m in logs.output), 1, logs.output)
        # The server's lease expiry (every second) requeues them, the attempt counted.
        for job_id in ids:
            j = wait_for(lambda: (lambda j: j["status"] == "queued" and j)(self.admin.get(job_id)), 10, "requeued")
            self.assertEqual((j["attempts"], j["last_error"]), (1, "lease_expired"))
            self.assertEqual(self.admin.events(job_id)[-1]["event"], "expired")

    def test_release_fail_mode_fails_unfinished_jobs_retryably(self) -> None:
        slow = self.client.enqueue(self.type, {"ms": 60_000}).id
        started = threading.Event()
        worker = Worker(self.client, concurrency=1, wait_ms=200, shutdown_timeout=0.2, release="fail")

        @worker.handler(self.type)
        def handle(job: LeasedJob) -> None:
            started.set()
            job.cancelled.wait(60)

        t = self.start(worker)
        self.assertTrue(started.wait(15))
        worker.stop()
        t.join(15)
        j = self.admin.get(slow)
        self.assertEqual((j["status"], j["attempts"]), ("queued", 1))
        self.assertIn("shutting down", j["last_error"])
        self.assertGreater(j["available_at"], j["updated_at"])  # the server's retry backoff

    def test_job_not_found_is_not_taken_for_a_missing_release_route(self) -> None:
        class GoneJobClient(Client):
            def release(self, job_id: str, worker_id: str, lease_token: Any = None) -> Any:
                calls.append(job_id)
                raise JobNotFound("job not found", status=404, code="job_not_found")

        calls: List[str] = []
        worker = Worker(GoneJobClient(self.server.base_url, self.client.token))
        for n in range(2):
            job = LeasedJob({"job_id": f"j{n}", "lease_token": "t"}, worker.worker_id, threading.Event())
            self.assertTrue(worker._give_back(job))
        self.assertEqual(calls, ["j0", "j1"])
        self.assertTrue(worker._release_supported)
        with self.assertRaises(ValueError):
            Worker(release="expire")

    def test_job_types_without_a_handler_are_refused_at_start(self) -> None:
        worker = Worker(self.client, job_types=[self.type, "other.type"])
        worker.handler(self.type)(lambda job: None)
        with self.assertRaises(ValueError):
            worker.run()

    def test_run_raises_when_the_token_is_refused(self) -> None:
        bad = Client(self.server.base_url, "not-a-token")
        self.addCleanup(bad.close)
        worker = Worker(bad, wait_ms=0)
        worker.handler(self.type)(lambda job: None)
        t0 = time.monotonic()
        with self.assertRaises(Unauthorized):
            worker.run()
        self.assertLess(time.monotonic() - t0, 5.0)

    def test_prefetch_leases_in_batches(self) -> None:
        n = 500
        self.client.enqueue_batch([{"type": self.type, "input": {}} for _ in range(n)])
        worker = Worker(self.client, concurrency=2, prefetch=48, wait_ms=200)
        worker.handler(self.type)(lambda job: None)
        t = self.start(worker)
        wait_for(lambda: self.counts(self.type).get("succeeded") == n, 30, "the prefetching worker to drain")
        worker.stop()
        t.join(15)
        jobs = list(self.admin.iter_jobs(type=self.type))
        self.assertTrue(all(j["attempts"] == 1 for j in jobs))
