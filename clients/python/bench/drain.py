#!/usr/bin/env python3
"""Drain benchmark of the Python worker: enqueue N jobs (enqueue_batch), then drain them
with a Worker running a no-op handler; prints jobs/s.

Against a running server::

    python3 clients/python/bench/drain.py --url http://127.0.0.1:8000 --token "$TOKEN"

(``--url``/``--token`` fall back to WP_LITE_URL / WP_LITE_TOKEN.) Or let it start a
throw-away ``wp-lite serve --workers none`` on a temporary SQLite file and a free port,
stopped at the end::

    WP_LITE_BIN=target/release/wp-lite python3 clients/python/bench/drain.py --serve

Each run uses its own job type, so runs do not see each other's jobs. A run counts from
the worker's start until the server has acknowledged every job's completion, and then
checks with ``GET /v1/worker/queues`` that all N succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wp_lite import Client, Finished, Worker  # noqa: E402


def start_server(binary: str, token: str) -> Tuple["subprocess.Popen[bytes]", str, str]:
    directory = tempfile.mkdtemp(prefix="wp-lite-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WP_LITE_")}
    env["WP_LITE_ADMIN_TOKEN"] = token
    proc = subprocess.Popen(
        [binary, "--log-format", "json", "--database-url", f"sqlite://{directory}/bench.db",
         "serve", "--bind", "127.0.0.1:0", "--workers", "none"],
        cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    addr = None
    deadline = time.monotonic() + 30
    for raw in proc.stderr:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("message") == "wp-lite serving":
            addr = line["addr"]
            break
        if time.monotonic() > deadline:
            break
    if addr is None:
        proc.kill()
        raise SystemExit("wp-lite serve did not start")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    return proc, f"http://{addr}", directory


def one_run(client: Client, n: int, args: argparse.Namespace) -> Tuple[float, float]:
    job_type = f"bench.noop.{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        client.enqueue_batch([{"type": job_type, "input": {"i": i}} for i in range(start, min(n, start + 1000))])
    enqueue_s = time.perf_counter() - t0

    worker = Worker(
        client,
        worker_id=f"bench-{os.getpid()}",
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_seconds=60,
        wait_ms=1000,
        ack_batch=args.ack_batch,
        handle_signals=False,
    )
    worker.handler(job_type)(lambda job: None)
    done = [0]
    all_done = threading.Event()

    @worker.on_finished
    def count(f: Finished) -> None:
        done[0] += 1
        if done[0] >= n:
            all_done.set()

    t = threading.Thread(target=worker.run, daemon=True)
    t0 = time.perf_counter()
    t.start()
    if not all_done.wait(600):
        worker.stop()
        raise SystemExit(f"only {done[0]} of {n} jobs finished in 600 s")
    drain_s = time.perf_counter() - t0
    worker.stop()
    t.join(60)
    counts = next(q["counts"] for q in client.queues() if q["type"] == job_type)
    if counts["succeeded"] != n:
        raise SystemExit(f"expected {n} succeeded, the server counts {counts}")
    return n / enqueue_s, n / drain_s


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="server URL (default $WP_LITE_URL)")
    p.add_argument("--token", help="admin token (default $WP_LITE_TOKEN); listing queues needs admin")
    p.add_argument("--serve", action="store_true", help="start $WP_LITE_BIN (or --bin) on a temporary database")
    p.add_argument("--bin", default=os.environ.get("WP_LITE_BIN"), help="the wp-lite binary for --serve")
    p.add_argument("-n", "--jobs", type=int, default=20000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--prefetch", type=int, default=96, help="jobs leased beyond free threads (default 96: leases of up to 100)")
    p.add_argument("--ack-batch", type=int, default=100)
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of the runs to FILE")
    args = p.parse_args(argv)

    proc = None
    directory = None
    if args.serve:
        if not args.bin:
            p.error("--serve needs WP_LITE_BIN or --bin")
        token = "bench-admin-token-" + uuid.uuid4().hex
        proc, url, directory = start_server(args.bin, token)
    else:
        url = args.url or os.environ.get("WP_LITE_URL") or ""
        token = args.token or os.environ.get("WP_LITE_TOKEN") or ""
        if not url or not token:
            p.error("give --url and --token (or WP_LITE_URL / WP_LITE_TOKEN), or --serve")
    client = Client(url, token)
    profiles: list = []
    if args.profile:
        # cProfile sees one thread; give every thread the worker starts its own profile.
        import cProfile

        def profile_thread(*_: object) -> None:
            sys.setprofile(None)
            prof = cProfile.Profile()
            profiles.append(prof)
            prof.enable()

        threading.setprofile(profile_thread)
    try:
        print(
            f"drain: {args.jobs} no-op jobs, Worker concurrency={args.concurrency} prefetch={args.prefetch} "
            f"ack_batch={args.ack_batch}, server {url}{' (started here)' if proc else ''}, Python {sys.version.split()[0]}"
        )
        rates: List[float] = []
        for run in range(1, args.runs + 1):
            enq, drain = one_run(client, args.jobs, args)
            rates.append(drain)
            print(f"run {run}: enqueue_batch {enq:8.0f} jobs/s   drain {drain:8.0f} jobs/s")
        print(
            f"drain jobs/s: median {statistics.median(rates):.0f}, best {max(rates):.0f}, worst {min(rates):.0f} "
            f"over {len(rates)} runs"
        )
    finally:
        if profiles:
            import pstats

            threading.setprofile(None)  # type: ignore[arg-type]
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
            stats.dump_stats(args.profile)
            print(f"profile of {len(profiles)} threads in {args.profile} (python3 -m pstats {args.profile})")
        client.close()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
