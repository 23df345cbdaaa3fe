"""``python -m wp_lite worker`` as a child process, stopped by signals with jobs in hand."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from typing import List

from .support import PACKAGE_ROOT, PYTHON, WORKER, ServerTestCase, python_env, spawn, stop_process, wait_for


class WorkerProcess:
    """``python -m wp_lite worker tests.worker_app:worker`` with its output collected."""

    def __init__(self, case: ServerTestCase, **env: str) -> None:
        self.proc = spawn(
            [PYTHON, "-m", "wp_lite", "worker", "tests.worker_app:worker", "--log-level", "info"],
            cwd=PACKAGE_ROOT,
            env=python_env(WP_LITE_URL=case.server.base_url, WP_LITE_TOKEN=WORKER, **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        case.addCleanup(self.close)
        self.out: List[str] = []
        self.err: List[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream: object, into: List[str]) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            into.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def started(self) -> List[str]:
        return [line.split()[1] for line in self.out if line.startswith("started ")]

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return code

    def close(self) -> None:
        stop_process(self.proc, signal.SIGKILL)
        for t in self._readers:
            t.join(5)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()

    def output(self) -> str:
        return "stdout:\n" + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err)


class SignalStop(ServerTestCase):
    def setUp(self) -> None:
        self.admin.bulk_cancel(type="app.sleep")  # what an earlier test left behind

    def enqueue(self, ms: int, priority: int, n: int = 1) -> List[str]:
        return [j.id for j in self.admin.enqueue_batch([{"type": "app.sleep", "input": {"ms": ms}, "priority": priority}] * n)]

    def test_sigterm_finishes_jobs_in_hand_and_puts_the_rest_back_in_queued(self) -> None:
        quick = self.enqueue(1500, 0, 2)
        slow = self.enqueue(120_000, 0, 2)
        rest = self.enqueue(0, 9, 6)
        w = WorkerProcess(self, CONCURRENCY="4", SHUTDOWN_TIMEOUT="3")
        wait_for(lambda: len(w.started()) >= 4, 20, lambda: "four jobs in hand: " + w.output())
        self.assertEqual(sorted(w.started()), sorted(quick + slow))

        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        code = w.wait(20)
        took = time.monotonic() - t0
        self.assertEqual(code, 0, w.output())
        self.assertGreater(took, 2.5, "the slow jobs got the grace time")
        self.assertLess(took, 8.0, w.output())
        self.assertNotIn("Traceback", "\n".join(w.err))

        for job_id in quick:
            j = self.admin.get(job_id)
            self.assertEqual((j["status"], j["attempts"]), ("succeeded", 1), j)
            self.assertIn(f"finished {job_id} complete ok=True", w.out)
        # The unfinished ones were released before the worker exited: queued, available
        # at once, the attempt not counted; not leased, not failed, not left to expire.
        for job_id in slow:
            j = self.admin.get(job_id)
            self.assertEqual((j["status"], j["attempts"], j["lease_owner"]), ("queued", 0, None), j)
            self.assertLessEqual(j["available_at"], j["updated_at"])
            events = self.admin.events(job_id)
            self.assertEqual([e["event"] for e in events], ["queued", "leased", "released"])
            self.assertTrue(events[-1]["details"]["worker_id"].startswith("py-"), events[-1])
        for job_id in rest:  # leasing stopped at once: never leased
            j = self.admin.get(job_id)
            self.assertEqual((j["status"], j["attempts"]), ("queued", 0))
        counts = self.counts("app.sleep")
        self.assertEqual((counts["leased"], counts["failed"]), (0, 0))

    def test_a_second_signal_cuts_the_grace_time_short(self) -> None:
        slow = self.enqueue(120_000, 0, 1)
        w = WorkerProcess(self, CONCURRENCY="1", SHUTDOWN_TIMEOUT="60")
        wait_for(lambda: w.started() == slow, 20, lambda: "the job in hand: " + w.output())
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: any("worker stopping" in line for line in w.err), 10, "the stop to begin")
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.wait(15), 0, w.output())
        self.assertLess(time.monotonic() - t0, 5.0)
        j = self.admin.get(slow[0])
        self.assertEqual((j["status"], j["attempts"]), ("queued", 0))

    def test_sigint_while_idle_exits_at_once(self) -> None:
        w = WorkerProcess(self, CONCURRENCY="2")
        wait_for(lambda: any("worker started" in line for line in w.err), 20, lambda: "the worker to start: " + w.output())
        time.sleep(0.3)  # let it enter the long poll
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGINT)
        self.assertEqual(w.wait(15), 0, w.output())
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertTrue(any("worker stopped" in line for line in w.err), w.output())

    def test_unknown_target_is_bad_usage(self) -> None:
        p = subprocess.run(
            [PYTHON, "-m", "wp_lite", "worker", "tests.no_such_module:worker"],
            cwd=PACKAGE_ROOT,
            env=python_env(WP_LITE_URL=self.server.base_url, WP_LITE_TOKEN=WORKER),
            capture_output=True,
            timeout=30,
        )
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"cannot import", p.stderr)
        p = subprocess.run(
            [PYTHON, "-m", "wp_lite", "worker", "tests.worker_app:nothing"],
            cwd=PACKAGE_ROOT,
            env=python_env(),
            capture_output=True,
            timeout=30,
        )
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_a_refused_token_exits_1(self) -> None:
        p = subprocess.run(
            [PYTHON, "-m", "wp_lite", "worker", "tests.worker_app", "--token", "wrong-" + uuid.uuid4().hex],
            cwd=PACKAGE_ROOT,
            env=python_env(WP_LITE_URL=self.server.base_url),
            capture_output=True,
            timeout=30,
        )
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"unauthorized", p.stderr)
