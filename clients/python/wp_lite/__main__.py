"""Command line: ``python -m wp_lite worker MODULE[:ATTR]`` and ``python -m wp_lite enqueue TYPE JSON``.

Exit codes: 0 success (or a clean stop), 2 bad usage, 1 an error answer or an
unreachable server (the message on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any, List, Optional, Sequence

from .client import DEFAULT_URL, Client
from .errors import WpLiteError
from .worker import Worker

PROG = "python -m wp_lite"


class UsageError(Exception):
    """Bad usage: exit status 2."""


def _env_url(arg: Optional[str]) -> str:
    return arg or os.environ.get("WP_LITE_URL") or DEFAULT_URL


def _env_token(arg: Optional[str]) -> Optional[str]:
    return arg or os.environ.get("WP_LITE_TOKEN") or os.environ.get("WP_LITE_WORKER_TOKEN")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="wp-lite client and worker runner")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="server base URL (default: $WP_LITE_URL or %s)" % DEFAULT_URL)
    common.add_argument("--token", help="admin or worker token (default: $WP_LITE_TOKEN, then $WP_LITE_WORKER_TOKEN)")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds a call may take (default 30)")

    w = sub.add_parser(
        "worker",
        parents=[common],
        help="run a Worker defined in a module",
        description=(
            "Imports MODULE and runs the Worker found at ATTR (default: the attribute 'worker', "
            "or the module's only Worker). ATTR may also name a function returning a Worker. "
            "A Worker built without a client gets one from --url/--token or WP_LITE_URL/WP_LITE_TOKEN; "
            "--url/--token replace the client the module gave it. Stops gracefully on SIGINT/SIGTERM."
        ),
    )
    w.add_argument("target", metavar="MODULE[:ATTR]", help="e.g. myapp.jobs:worker")
    w.add_argument("--concurrency", type=int, help="handler threads (overrides the module's)")
    w.add_argument("--worker-id", help="worker id (overrides the module's)")
    w.add_argument("--shutdown-timeout", type=float, help="grace seconds for jobs in hand on stop")
    w.add_argument("--log-level", default=os.environ.get("WP_LITE_LOG_LEVEL", "info"), help="debug, info, warning, error (default info)")

    e = sub.add_parser(
        "enqueue",
        parents=[common],
        help="enqueue one job and print it as JSON",
        description="Enqueues a job of TYPE with the JSON object INPUT and prints the job as JSON.",
    )
    e.add_argument("type", metavar="TYPE")
    e.add_argument("input", metavar="JSON", nargs="?", default="{}", help="the input object (default {})")
    e.add_argument("--priority", type=int)
    e.add_argument("--max-attempts", type=int)
    e.add_argument("--delay-seconds", type=int)
    e.add_argument("--available-at", help="RFC 3339 time with an offset")
    e.add_argument("--idempotency-key")
    e.add_argument("--job-id")
    return p


def _load_worker(target: str) -> Worker:
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise UsageError(f"not a MODULE[:ATTR]: {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r}: {e}") from e
    obj: Any
    if attr:
        obj = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    elif isinstance(getattr(module, "worker", None), Worker):
        obj = module.worker
    else:
        found = [v for v in vars(module).values() if isinstance(v, Worker)]
        if len(found) != 1:
            raise UsageError(f"{module_name!r}: name the Worker as {module_name}:ATTR ({len(found)} found)")
        obj = found[0]
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise UsageError(f"{target!r} is not a wp_lite.Worker (it is {type(obj).__name__})")
    return obj


def _cmd_worker(args: argparse.Namespace) -> int:
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {args.log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    worker = _load_worker(args.target)
    if args.url or args.token or worker._client is None:
        worker.client = Client(_env_url(args.url), _env_token(args.token), timeout=args.timeout)
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise UsageError("--concurrency must be >= 1")
        worker.concurrency = args.concurrency
    if args.worker_id:
        worker.worker_id = args.worker_id
    if args.shutdown_timeout is not None:
        worker.shutdown_timeout = args.shutdown_timeout
    try:
        worker.run()
    except WpLiteError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.input)
    except ValueError as e:
        raise UsageError(f"JSON is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise UsageError("JSON must be a JSON object")
    token = _env_token(args.token)
    if not token:
        raise UsageError("no token: pass --token or set WP_LITE_TOKEN")
    try:
        client = Client(_env_url(args.url), token, timeout=args.timeout)
    except ValueError as e:
        raise UsageError(str(e)) from None
    fields = {
        "priority": args.priority,
        "max_attempts": args.max_attempts,
        "delay_seconds": args.delay_seconds,
        "available_at": args.available_at,
        "idempotency_key": args.idempotency_key,
        "job_id": args.job_id,
    }
    try:
        job = client.enqueue(args.type, payload, **{k: v for k, v in fields.items() if v is not None})
    except WpLiteError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        for f in e.fields:
            print(f"  {f.get('field')}: {f.get('message')}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if job.replayed:
        print(f"{PROG}: idempotent replay: the job already existed", file=sys.stderr)
    print(json.dumps(job))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)  # exits 2 on bad usage
    try:
        if args.command == "worker":
            return _cmd_worker(args)
        return _cmd_enqueue(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def _entry(argv: Optional[List[str]] = None) -> None:
    sys.exit(main(argv))


if __name__ == "__main__":
    _entry()
