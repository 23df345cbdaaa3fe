"""Test helpers: a real ``wp-lite serve`` per test class, and bounded polling.

The binary comes from the environment variable WP_LITE_BIN; without it every test skips
(unittest.SkipTest) and says why.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, TypeVar, Union

from . import PACKAGE_ROOT  # noqa: F401 - puts the package on sys.path

from wp_lite import Client

ADMIN = "py-tests-admin-token-0123456789abcdef"
WORKER = "py-tests-worker-token-0123456789abcdef"

T = TypeVar("T")

_children: List["subprocess.Popen[bytes]"] = []
_children_lock = threading.Lock()


def _kill_children() -> None:
    with _children_lock:
        procs = list(_children)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:  # noqa: BLE001
                pass


atexit.register(_kill_children)


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan if the tests are killed
    except Exception:  # noqa: BLE001 - not Linux: atexit still cleans up
        pass


def spawn(args: Sequence[str], **kwargs: Any) -> "subprocess.Popen[bytes]":
    """Popen that is killed at interpreter exit (and, on Linux, when the tests die)."""
    p = subprocess.Popen(list(args), preexec_fn=_die_with_parent, **kwargs)
    with _children_lock:
        _children.append(p)
    return p


def stop_process(p: "subprocess.Popen[bytes]", sig: int = signal.SIGTERM, timeout: float = 20.0) -> Optional[int]:
    """Signals a child and waits for it, killing it if it does not exit in time."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    return p.returncode


def binary() -> str:
    path = os.environ.get("WP_LITE_BIN")
    if not path:
        raise unittest.SkipTest(
            "WP_LITE_BIN is not set: point it at a wp-lite binary (e.g. target/release/wp-lite) "
            "to run the Python client tests against a real server"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise unittest.SkipTest(f"WP_LITE_BIN={path!r} is not an executable file")
    return path


def wait_for(cond: Callable[[], T], timeout: float, what: Union[str, Callable[[], str]], interval: float = 0.05) -> T:
    """Polls ``cond`` until it returns something truthy; fails the test after ``timeout``
    (``what`` says what was awaited; a callable is asked only then)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {text} (last: {last!r})")
        time.sleep(interval)


class Server:
    """One ``wp-lite serve --workers none`` on 127.0.0.1 with its own SQLite file."""

    def __init__(self, directory: str, *, port: int = 0, args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.db = os.path.join(directory, "wp-lite.db")
        self.port = port
        self.args = list(args)
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self.log: Deque[str] = collections.deque(maxlen=500)
        self.base_url = ""

    def start(self, timeout: float = 30.0) -> "Server":
        cmd = [
            binary(),
            "--log-format",
            "json",
            "--database-url",
            f"sqlite://{self.db}",
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "none",
            "--worker-token",
            WORKER,
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WP_LITE_", "NOTIFICATIONS_"))}
        env.pop("RUST_LOG", None)
        env["WP_LITE_ADMIN_TOKEN"] = ADMIN
        proc = spawn(cmd, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc = proc
        found = threading.Event()
        addr: Dict[str, str] = {}

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.append(line)
                if not found.is_set():
                    try:
                        v = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(v, dict) and v.get("message") == "wp-lite serving":
                        addr["addr"] = str(v.get("addr"))
                        found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(timeout) or "addr" not in addr:
            self.stop(signal.SIGKILL)
            raise AssertionError("wp-lite serve did not start:\n" + "\n".join(self.log))
        self.base_url = "http://" + addr["addr"]
        self.port = int(addr["addr"].rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        if self.proc is None:
            return None
        code = stop_process(self.proc, sig)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        return code

    def admin(self, **kwargs: Any) -> Client:
        return Client(self.base_url, ADMIN, **kwargs)

    def worker_client(self, **kwargs: Any) -> Client:
        return Client(self.base_url, WORKER, **kwargs)


class ServerTestCase(unittest.TestCase):
    """Starts one server for the class (``server_args`` extra options) and stops it at
    the end, also when a test or the set-up fails."""

    server_args: Sequence[str] = ()
    server: Server
    admin: Client

    @classmethod
    def setUpClass(cls) -> None:
        binary()
        directory = tempfile.mkdtemp(prefix="wp-lite-py-")
        cls.addClassCleanup(shutil.rmtree, directory, True)
        cls.server = Server(directory, args=cls.server_args)
        cls.addClassCleanup(cls.server.stop)
        cls.server.start()
        cls.admin = cls.server.admin()
        cls.addClassCleanup(cls.admin.close)

    def counts(self, job_type: str) -> Dict[str, int]:
        for q in self.admin.queues():
            if q["type"] == job_type:
                return dict(q["counts"])
        return {}


def python_env(**extra: str) -> Dict[str, str]:
    """The environment for a Python child that imports wp_lite (and the tests package)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


PYTHON = sys.executable
