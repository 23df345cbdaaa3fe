"""``python -m wp_lite enqueue`` against a real server."""

from __future__ import annotations

import json
import subprocess
from typing import Dict, Sequence

from .support import ADMIN, PACKAGE_ROOT, PYTHON, WORKER, ServerTestCase, python_env


class EnqueueCommand(ServerTestCase):
    def cli(self, args: Sequence[str], **env: str) -> "subprocess.CompletedProcess[str]":
        base: Dict[str, str] = python_env(**env)
        for k in ("WP_LITE_URL", "WP_LITE_TOKEN", "WP_LITE_WORKER_TOKEN"):
            if k not in env:
                base.pop(k, None)
        return subprocess.run(
            [PYTHON, "-m", "wp_lite", *args],
            cwd=PACKAGE_ROOT,
            env=base,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_enqueue_prints_the_job(self) -> None:
        p = self.cli(
            ["enqueue", "cli.job", '{"to": "a@example.com"}', "--url", self.server.base_url, "--token", WORKER, "--priority", "2"]
        )
        self.assertEqual(p.returncode, 0, p.stderr)
        job = json.loads(p.stdout)
        self.assertEqual((job["type"], job["input"], job["priority"], job["status"]), ("cli.job", {"to": "a@example.com"}, 2, "queued"))
        self.assertEqual(self.admin.get(job["job_id"])["input"], {"to": "a@example.com"})

    def test_url_and_token_from_the_environment_and_idempotent_replay(self) -> None:
        env = {"WP_LITE_URL": self.server.base_url, "WP_LITE_TOKEN": ADMIN}
        first = self.cli(["enqueue", "cli.env", '{"n": 1}', "--idempotency-key", "once"], **env)
        again = self.cli(["enqueue", "cli.env", '{"n": 1}', "--idempotency-key", "once"], **env)
        self.assertEqual((first.returncode, again.returncode), (0, 0), first.stderr + again.stderr)
        self.assertEqual(json.loads(first.stdout)["job_id"], json.loads(again.stdout)["job_id"])
        self.assertIn("replay", again.stderr)
        conflict = self.cli(["enqueue", "cli.env", '{"n": 2}', "--idempotency-key", "once"], **env)
        self.assertEqual(conflict.returncode, 1)
        self.assertIn("idempotency_conflict", conflict.stderr)

    def test_server_errors_exit_1_with_the_message(self) -> None:
        p = self.cli(["enqueue", "cli.job", "{}", "--url", self.server.base_url, "--token", "wrong"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("401 unauthorized", p.stderr)
        p = self.cli(["enqueue", "cli.job", "{}", "--url", self.server.base_url, "--token", ADMIN, "--max-attempts", "0"])
        self.assertEqual(p.returncode, 1)
        self.assertIn("max_attempts", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_bad_usage_exits_2(self) -> None:
        env = {"WP_LITE_URL": self.server.base_url, "WP_LITE_TOKEN": ADMIN}
        for args in (
            ["enqueue"],  # no type
            ["enqueue", "cli.job", "{not json"],
            ["enqueue", "cli.job", "[1, 2]"],  # not an object
            ["enqueue", "cli.job", "{}", "--priority", "high"],
            ["frobnicate"],
        ):
            p = self.cli(args, **env)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertTrue(p.stderr.strip(), args)
        p = self.cli(["enqueue", "cli.job", "{}", "--url", self.server.base_url])  # no token anywhere
        self.assertEqual(p.returncode, 2)
        self.assertIn("token", p.stderr)

    def test_unreachable_server_exits_1(self) -> None:
        p = self.cli(["enqueue", "cli.job", "{}", "--url", "http://127.0.0.1:9", "--token", ADMIN])
        self.assertEqual(p.returncode, 1)
        self.assertIn("connection_error", p.stderr)
