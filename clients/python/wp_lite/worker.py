"""The worker: handlers registered by job type, run by a pool of threads.

One leasing thread long-polls ``lease`` for as many jobs as there are free slots, a pool
of ``concurrency`` threads runs the handlers, one heartbeat thread extends the lease of
every job in hand at a third of the lease, and one thread reports the outcomes in
batches through ``ack``. See :class:`Worker`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

from .client import Client, Job
from .errors import (
    Conflict,
    Forbidden,
    InvalidPayload,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RetryableError,
    TransportError,
    Unauthorized,
    Unavailable,
    WpLiteError,
    ServerError,
    error_from_item,
)

__all__ = ["Worker", "LeasedJob", "Handler", "Finished", "current_job"]

log = logging.getLogger("wp_lite")

#: A handler takes the leased job (a dict) and returns the job's result: a dict or None.
Handler = Callable[["LeasedJob"], Optional[Dict[str, Any]]]

#: The catch-all handler type: ``@worker.handler("*")`` (never a valid job type).
ANY = "*"

MAX_LEASE_LIMIT = 100
MAX_ERROR_CHARS = 10_000
MAX_TRACEBACK_CHARS = 20_000

_RETRY_SOON = (TransportError, Unavailable, ServerError)
_GONE = ("lease_lost", "job_canceled", "job_not_leased", "job_not_found")

_local = threading.local()


def current_job() -> Optional["LeasedJob"]:
    """The job the calling handler thread is running (``None`` outside a handler)."""
    return getattr(_local, "job", None)


class LeasedJob(Job):
    """The job a handler is called with: the job view (a ``dict``, with its
    ``lease_token``) plus what the handler may want to watch.

    - ``cancelled``: a :class:`threading.Event`, set when the job is no longer this
      worker's: an admin canceled it, its lease was lost (expired and leased again), or
      the worker gave it up at the end of a graceful stop. Whatever the handler returns
      after that is dropped. ``cancel_reason`` says which (``"job_canceled"``,
      ``"lease_lost"``, ``"job_not_leased"``, ``"job_not_found"``, ``"shutdown"``).
    - ``stopping``: a :class:`threading.Event`, set when the worker begins a graceful
      stop (the job may still finish within the grace time).
    - ``worker_id``: the id it is leased to.
    """

    __slots__ = ("cancelled", "cancel_reason", "stopping", "worker_id", "_next_beat", "_done", "_abandoned")

    def __init__(self, view: Dict[str, Any], worker_id: str, stopping: threading.Event) -> None:
        super().__init__(view)
        self.cancelled = threading.Event()
        self.cancel_reason: Optional[str] = None
        self.stopping = stopping
        self.worker_id = worker_id
        self._next_beat = 0.0
        self._done = False  # an outcome was produced (or dropped): no longer the handler's
        self._abandoned = False

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set()

    @property
    def lease_token(self) -> Optional[str]:
        return self.get("lease_token")

    def _cancel(self, reason: str) -> None:
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()

    def __repr__(self) -> str:
        return f"LeasedJob({self.get('job_id')!r}, type={self.get('type')!r}, attempts={self.get('attempts')!r})"


@dataclass(frozen=True)
class Finished:
    """What became of one job the worker ran, passed to ``on_finished`` callbacks once
    the server has answered.

    ``outcome`` is what the worker reported: ``"complete"`` or ``"fail"``; ``ok`` whether
    the server accepted it, ``status`` the job's status then (``succeeded``, ``queued`` for
    a retry after backoff, ``failed``); ``error`` the failure text the worker reported;
    ``refused`` the server's code when it refused (``lease_lost``, ``job_canceled``, ...).
    """

    job: LeasedJob
    outcome: str
    ok: bool
    status: Optional[str] = None
    error: Optional[str] = None
    refused: Optional[str] = None

    @property
    def job_id(self) -> str:
        return self.job.id


class _Outcome:
    __slots__ = ("job", "item", "queued_at", "retried")

    def __init__(self, job: LeasedJob, item: Dict[str, Any]) -> None:
        self.job = job
        self.item = item
        self.queued_at = time.monotonic()
        self.retried = False


def _clean_text(text: str, limit: int) -> str:
    text = text.replace("\x00", "\\0")
    if len(text) > limit:
        text = text[: limit - 20] + " …(truncated)"
    return text


def _kv(fields: Dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def _log(level: int, msg: str, **fields: Any) -> None:
    if log.isEnabledFor(level):
        log.log(level, "%s %s" % (msg, _kv(fields)) if fields else msg, extra={"wp_lite": fields})


class Worker:
    """Runs handlers for the jobs of a wp-lite server.

    ::

        worker = Worker(Client(url, token), concurrency=4)

        @worker.handler("reports.render")
        def render(job):
            return {"pages": 3}          # the job's result (a dict or None)

        worker.run()                     # until worker.stop() or SIGINT/SIGTERM

    ``client``: a :class:`Client`; ``None`` builds one from ``WP_LITE_URL`` and
    ``WP_LITE_TOKEN`` when the worker starts. ``worker_id`` defaults to
    ``py-<host>-<pid>``. ``concurrency`` handler threads run at once. ``job_types``
    defaults to the types with a registered handler (any type when a ``"*"`` handler
    is registered); every type given needs a handler (or a ``"*"`` one). ``lease_seconds`` is the lease asked for (heartbeats every third of
    it); ``wait_ms`` the long-poll wait (≤ 30 000). ``prefetch`` jobs may be leased
    beyond the free handler threads and wait locally (more throughput for short jobs; 0
    leases only for free threads). Outcomes go to the server in ``ack`` batches of up to
    ``ack_batch``, sent when full or ``ack_interval`` seconds after the oldest.

    Graceful stop (:meth:`stop`, or SIGINT/SIGTERM when :meth:`run` is on the main
    thread): leasing stops at once (a waiting long poll is abandoned); the jobs in hand
    get ``shutdown_timeout`` seconds to finish and their outcomes are reported; the
    jobs still unfinished then (and leased jobs not started) are given back according
    to ``release``:

    - ``"release"`` (default): :meth:`Client.release` gives each lease back unused: the
      job is ``queued`` again at once, available at once, and the attempt is not
      counted (a ``released`` event). A server without that route (404 ``not_found``
      or 405) gets the older way instead: the lease is shortened to one second with a
      heartbeat, and the server's lease expiry requeues the job, available at once,
      within about two seconds (the attempt stays counted; an ``expired`` event).
    - ``"fail"``: fails them with ``retryable: true``: the attempt counts and the job
      only becomes available after the server's retry backoff (30 s or more), or fails
      for good on its last attempt.

    A second signal skips the rest of the grace time. Then pending acks are flushed
    (retried up to ``ack_flush_timeout`` seconds) and ``run`` returns.
    """

    def __init__(
        self,
        client: Optional[Client] = None,
        worker_id: Optional[str] = None,
        concurrency: int = 4,
        job_types: Optional[Sequence[str]] = None,
        lease_seconds: int = 60,
        wait_ms: int = 20_000,
        ack_batch: int = 100,
        ack_interval: float = 0.005,
        prefetch: int = 0,
        shutdown_timeout: float = 30.0,
        release: str = "release",
        ack_flush_timeout: float = 10.0,
        handle_signals: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not 1 <= lease_seconds <= 3600:
            raise ValueError("lease_seconds must be within 1..3600")
        if not 0 <= wait_ms <= 30_000:
            raise ValueError("wait_ms must be within 0..30000")
        if not 1 <= ack_batch <= 1000:
            raise ValueError("ack_batch must be within 1..1000")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if release not in ("release", "fail"):
            raise ValueError('release must be "release" or "fail"')
        self._client = client
        self.worker_id = worker_id or f"py-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = int(concurrency)
        self.job_types: Optional[List[str]] = list(job_types) if job_types else None
        self.lease_seconds = int(lease_seconds)
        self.wait_ms = int(wait_ms)
        self.ack_batch = int(ack_batch)
        self.ack_interval = float(ack_interval)
        self.prefetch = int(prefetch)
        self.shutdown_timeout = float(shutdown_timeout)
        self.release = release
        self.ack_flush_timeout = float(ack_flush_timeout)
        self.handle_signals = handle_signals
        self._handlers: Dict[str, Handler] = {}
        self._finished_callbacks: List[Callable[[Finished], None]] = []

        self._cond = threading.Condition()
        self._held: Dict[str, LeasedJob] = {}  # every job leased and not yet reported
        self._free = 0  # slots: capacity minus jobs leased and not yet run
        self._waiting = 0  # leased, waiting for a handler thread
        self._running = 0  # handlers running now
        self._stopping = False
        self._stopping_event = threading.Event()
        self._stop_requested = threading.Event()
        self._signals = 0
        self._fatal: Optional[BaseException] = None
        self._started = False

        self._work: "queue.SimpleQueue[Optional[LeasedJob]]" = queue.SimpleQueue()
        self._acks: Deque[_Outcome] = collections.deque()
        self._ack_cond = threading.Condition()
        self._ack_stop = False
        self._ack_deadline: Optional[float] = None
        self._ack_supported = True
        self._release_supported = True
        self._hb_stop = threading.Event()
        self._lease_client: Optional[Client] = None
        self._threads: List[threading.Thread] = []

    # ---------- registration ----------

    @property
    def client(self) -> Client:
        """The client (built from ``WP_LITE_URL``/``WP_LITE_TOKEN`` if none was given)."""
        if self._client is None:
            self._client = Client.from_env()
        return self._client

    @client.setter
    def client(self, client: Client) -> None:
        if self._started:
            raise RuntimeError("the worker is running")
        self._client = client

    def handler(self, job_type: str = ANY) -> Callable[[Handler], Handler]:
        """Decorator: ``@worker.handler("reports.render")`` registers the function for
        that job type; ``@worker.handler("*")`` (or no argument) for every type without
        a handler of its own."""

        def register(fn: Handler) -> Handler:
            self.add_handler(job_type, fn)
            return fn

        return register

    def add_handler(self, job_type: str, fn: Handler) -> None:
        if self._started:
            raise RuntimeError("register handlers before run()")
        if not callable(fn):
            raise TypeError("a handler must be callable")
        self._handlers[job_type] = fn

    def on_finished(self, fn: Callable[[Finished], None]) -> Callable[[Finished], None]:
        """Registers a callback (usable as a decorator) called with a :class:`Finished`
        once the server has answered for a job (from the acking thread; keep it short)."""
        self._finished_callbacks.append(fn)
        return fn

    # ---------- life cycle ----------

    def stop(self) -> None:
        """Asks :meth:`run` to stop gracefully; returns at once (callable from any thread,
        also before ``run``)."""
        self._stop_requested.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def _lease_types(self) -> Optional[List[str]]:
        if self.job_types:
            return self.job_types
        if ANY in self._handlers:
            return None
        return sorted(self._handlers)

    def run(self) -> None:
        """Runs until :meth:`stop` or SIGINT/SIGTERM, then stops gracefully and returns.

        Raises the error that made it stop if the server refused the worker's
        credentials or requests (401, 403, 400 on ``lease``)."""
        if self._started:
            raise RuntimeError("a Worker runs once")
        if not self._handlers:
            raise RuntimeError("no handler registered")
        if self.job_types and ANY not in self._handlers:
            missing = [t for t in self.job_types if t not in self._handlers]
            if missing:
                raise ValueError(f"no handler for job_types {missing}; register them or a '*' handler")
        self._started = True
        client = self.client
        self._lease_client = client.clone()
        types = self._lease_types()
        self._free = self.concurrency + self.prefetch
        on_main = threading.current_thread() is threading.main_thread()
        previous: Dict[int, Any] = {}
        if self.handle_signals and on_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        _log(
            logging.INFO,
            "worker started",
            worker_id=self.worker_id,
            url=client.base_url,
            job_types=",".join(types) if types else "any",
            concurrency=self.concurrency,
            prefetch=self.prefetch,
        )
        try:
            self._spawn(self._lease_loop, "lease", types)
            self._spawn(self._heartbeat_loop, "heartbeat")
            self._spawn(self._ack_loop, "ack")
            for i in range(self.concurrency):
                self._spawn(self._handler_loop, f"handler-{i}")
            while not self._stop_requested.wait(0.1):
                if self._signals:
                    self._stop_requested.set()
            self._shutdown()
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
        _log(logging.INFO, "worker stopped", worker_id=self.worker_id)
        if self._fatal is not None:
            raise self._fatal

    def _on_signal(self, signum: int, frame: Any) -> None:
        # No locks here (not even Event.set): the main thread may hold the very lock
        # when the signal arrives. run() and _shutdown() poll this counter.
        self._signals += 1

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=self._guard, args=(target,) + args, name=f"wp_lite-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _guard(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 - a bug: stop rather than hang
            log.exception("wp_lite worker thread %s crashed", threading.current_thread().name)
            if self._fatal is None:
                self._fatal = e
            self._stop_requested.set()

    def _shutdown(self) -> None:
        grace_end = time.monotonic() + self.shutdown_timeout
        with self._cond:
            self._stopping = True
            in_hand = len(self._held)
            self._cond.notify_all()
        self._stopping_event.set()
        _log(logging.INFO, "worker stopping", worker_id=self.worker_id, in_hand=in_hand, grace_s=self.shutdown_timeout)
        # Leasing stops at once: a waiting long poll is abandoned. Closing repeatedly
        # also ends a call the leasing thread began just before it saw the flag; jobs a
        # finished lease brought in are held and given back below with the others.
        assert self._lease_client is not None
        leasing = self._threads[0]
        give_up = time.monotonic() + 5.0
        while leasing.is_alive() and time.monotonic() < give_up:
            self._lease_client.close()
            leasing.join(0.05)
        self._drain_unstarted()
        # The jobs in hand get the grace time (a second signal cuts it short).
        with self._cond:
            while self._running > 0 and self._signals < 2:
                left = grace_end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            self._drain_unstarted()
            abandoned = [j for j in self._held.values() if not j._done]
            for j in abandoned:
                j._abandoned = True
                j._done = True
                del self._held[j.id]
            running = self._running
        for j in abandoned:
            j._cancel("shutdown")
        # No heartbeat may extend a lease that is being given back.
        self._hb_stop.set()
        self._threads[1].join(self.client.timeout + 1.0)
        if abandoned:
            _log(
                logging.WARNING if running else logging.INFO,
                "giving back unfinished jobs",
                worker_id=self.worker_id,
                count=len(abandoned),
                still_running=running,
                release=self.release,
            )
            for i, j in enumerate(abandoned):
                if not self._give_back(j):
                    rest = len(abandoned) - i - 1
                    if rest:
                        _log(
                            logging.WARNING,
                            "server unreachable; leaving the other jobs to their lease expiry",
                            worker_id=self.worker_id,
                            count=rest,
                        )
                    break
        # Flush the outcomes, retrying for a while if the server is unreachable.
        with self._ack_cond:
            self._ack_deadline = time.monotonic() + self.ack_flush_timeout
            self._ack_stop = True
            self._ack_cond.notify_all()
        self._threads[2].join(self.ack_flush_timeout + self.client.timeout + 1.0)
        with self._ack_cond:
            late = list(self._acks)
            self._acks.clear()
        if late:  # reported after the acker left (a handler that ended with the grace time)
            self._send(late)
        for _ in range(self.concurrency):
            self._work.put(None)
        for t in self._threads[3:]:
            t.join(0.2)
        self._lease_client.close()
        self.client._close_dead()

    def _drain_unstarted(self) -> None:
        """Takes leased jobs that no handler started off the local queue (they stay in
        ``_held``, unfinished, and are given back)."""
        while True:
            try:
                j = self._work.get_nowait()
            except queue.Empty:
                return
            if j is None:
                continue
            with self._cond:
                self._waiting -= 1

    def _give_back(self, job: LeasedJob) -> bool:
        """Gives one unfinished job back (see ``release``); False when the server could
        not be reached (the job's lease will expire by itself)."""
        how = self.release
        delay = 0.1
        tries = 0
        while True:
            try:
                if how == "fail":
                    self.client.fail(
                        job.id,
                        self.worker_id,
                        "worker shutting down before the job finished",
                        retryable=True,
                        details={"worker_id": self.worker_id, "reason": "shutdown"},
                        lease_token=job.lease_token,
                    )
                elif self._release_supported:
                    self.client.release(job.id, self.worker_id, job.lease_token)
                else:
                    how = "expire"
                    self.client.heartbeat(job.id, self.worker_id, job.lease_token, lease_seconds=1)
                _log(logging.DEBUG, "job given back", job_id=job.id, release=how)
                return True
            except (NotFound, MethodNotAllowed) as e:
                if how == "release" and e.code in ("not_found", "method_not_allowed"):
                    # An unknown route (not job_not_found): a server older than release.
                    _log(logging.WARNING, "the server has no release route; letting leases expire instead", code=e.code)
                    self._release_supported = False
                    continue
                _log(logging.WARNING, "could not give back job", job_id=job.id, code=e.code, error=e.message)
                return True
            except _RETRY_SOON as e:
                # release and fail are not retried by the client; with the lease token a
                # second try is harmless (it is refused if the first one went through).
                tries += 1
                if tries > 2:
                    _log(logging.WARNING, "could not give back job", job_id=job.id, code=e.code, error=e.message)
                    return False
                time.sleep(delay)
                delay *= 2
            except Conflict as e:
                if tries and e.code in ("lease_lost", "job_not_leased"):
                    _log(logging.DEBUG, "job given back by an earlier try", job_id=job.id, code=e.code)
                else:
                    _log(logging.WARNING, "could not give back job", job_id=job.id, code=e.code, error=e.message)
                return True
            except WpLiteError as e:
                _log(logging.WARNING, "could not give back job", job_id=job.id, code=e.code, error=e.message)
                return True

    # ---------- leasing ----------

    def _lease_loop(self, types: Optional[List[str]]) -> None:
        assert self._lease_client is not None
        capacity = self.concurrency + self.prefetch
        backoff = 0.0
        idle = 0.0
        while True:
            with self._cond:
                # Lease when the local queue ran dry and a slot is free, or when half the
                # capacity is free (so prefetching leases in batches, not one by one).
                while not self._stopping and (
                    self._free <= 0 or (self._waiting > 0 and self._free < max(1, capacity // 2))
                ):
                    self._cond.wait()
                if self._stopping:
                    return
                limit = min(self._free, MAX_LEASE_LIMIT)
            asked = time.monotonic()
            try:
                jobs = self._lease_client.lease(
                    self.worker_id, types, limit=limit, lease_seconds=self.lease_seconds, wait_ms=self.wait_ms
                )
            except (Unauthorized, Forbidden, InvalidPayload, NotFound, MethodNotAllowed) as e:
                if self._stopping:
                    return
                _log(logging.ERROR, "lease refused; stopping", worker_id=self.worker_id, code=e.code, error=e.message)
                self._fatal = e
                self._stop_requested.set()
                return
            except WpLiteError as e:
                if self._stopping:
                    return
                backoff = min(max(backoff * 2, 0.25), 5.0)
                if isinstance(e, Unavailable) and e.retry_after:
                    backoff = max(backoff, min(e.retry_after, 30.0))
                _log(logging.WARNING, "lease failed; retrying", code=e.code, error=e.message, retry_in_s=backoff)
                if self._stop_requested.wait(backoff):
                    return
                continue
            if backoff:
                _log(logging.INFO, "leasing again", worker_id=self.worker_id)
            backoff = 0.0
            if not jobs:
                # An empty answer well before wait_ms (wait_ms 0, or the server's bound on
                # long polls reached): poll again after a pause, 50 ms doubling to 1 s.
                if time.monotonic() - asked < self.wait_ms / 2000.0 + 0.01:
                    idle = min(max(idle * 2, 0.05), 1.0)
                    if self._stop_requested.wait(idle):
                        return
                continue
            idle = 0.0
            first_beat = time.monotonic() + self.lease_seconds / 3.0
            leased = []
            for view in jobs:
                j = LeasedJob(view, self.worker_id, self._stopping_event)
                j._next_beat = first_beat
                leased.append(j)
            with self._cond:
                for j in leased:
                    self._held[j.id] = j
                self._free -= len(leased)
                self._waiting += len(leased)
            for j in leased:
                self._work.put(j)
            if log.isEnabledFor(logging.DEBUG):
                _log(logging.DEBUG, "leased", count=len(leased), limit=limit)

    # ---------- handlers ----------

    def _handler_loop(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            with self._cond:
                self._waiting -= 1
                if self._stopping:
                    # Not started: stays held and unfinished; _shutdown gives it back.
                    continue
                if job.cancelled.is_set():
                    job._done = True
                    self._held.pop(job.id, None)
                    self._free += 1
                    self._cond.notify_all()
                    continue
                self._running += 1
            item: Optional[Dict[str, Any]] = None
            try:
                item = self._run_handler(job)
            finally:
                with self._cond:
                    # Handed to the acker before the job stops counting as running, so
                    # a graceful stop that sees nothing running finds every outcome.
                    kept = item is not None and not job._abandoned and not job.cancelled.is_set()
                    if kept:
                        job._done = True
                        self._submit(_Outcome(job, item))  # type: ignore[arg-type]
                    elif not job._abandoned:
                        job._done = True
                        self._held.pop(job.id, None)
                    self._running -= 1
                    self._free += 1
                    self._cond.notify_all()
            if not kept and job.cancel_reason and job.cancel_reason != "shutdown":
                _log(logging.INFO, "result dropped", job_id=job.id, reason=job.cancel_reason)

    def _run_handler(self, job: LeasedJob) -> Optional[Dict[str, Any]]:
        """Runs the job's handler; returns its ack item (``None`` never, except on bugs)."""
        fence = {"job_id": job.id, "lease_token": job.lease_token}
        fn = self._handlers.get(job.get("type", "")) or self._handlers.get(ANY)
        if fn is None:
            return {**fence, "outcome": "fail", "error": f"no handler for job type {job.get('type')!r}", "retryable": False}
        _local.job = job
        try:
            result = fn(job)
        except RetryableError as e:
            details: Dict[str, Any] = {"exception": type(e).__name__, "retryable": True}
            if e.details:
                details.update(e.details)
            return {
                **fence,
                "outcome": "fail",
                "error": _clean_text(str(e) or type(e).__name__, MAX_ERROR_CHARS),
                "retryable": True,
                "details": details,
            }
        except BaseException as e:  # noqa: BLE001 - any other error fails the job for good
            tb = _clean_text(traceback.format_exc(), MAX_TRACEBACK_CHARS)
            text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if log.isEnabledFor(logging.DEBUG):
                log.debug("handler of job %s raised", job.id, exc_info=True)
            return {
                **fence,
                "outcome": "fail",
                "error": _clean_text(text, MAX_ERROR_CHARS),
                "retryable": False,
                "details": {"exception": type(e).__name__, "traceback": tb},
            }
        finally:
            _local.job = None
        if result is not None and not isinstance(result, dict):
            return {
                **fence,
                "outcome": "fail",
                "error": f"the handler returned {type(result).__name__}, not a dict or None",
                "retryable": False,
            }
        if result:
            try:
                json.dumps(result, allow_nan=False)
            except (TypeError, ValueError) as e:
                return {
                    **fence,
                    "outcome": "fail",
                    "error": _clean_text(f"the handler's result is not JSON: {e}", MAX_ERROR_CHARS),
                    "retryable": False,
                }
        return {**fence, "outcome": "complete", "result": result}

    # ---------- heartbeats ----------

    def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3.0
        while not self._hb_stop.is_set():
            now = time.monotonic()
            with self._cond:
                due = [j for j in self._held.values() if j._next_beat <= now]
                upcoming = [j._next_beat for j in self._held.values() if j._next_beat > now]
            for j in due:
                if self._hb_stop.is_set():
                    return
                self._beat(j, interval)
            nxt = min(upcoming, default=now + interval)
            self._hb_stop.wait(max(0.005, min(nxt - time.monotonic(), interval)))

    def _beat(self, job: LeasedJob, interval: float) -> None:
        try:
            view = self.client.heartbeat(job.id, self.worker_id, job.lease_token, lease_seconds=self.lease_seconds)
        except WpLiteError as e:
            if e.code not in _GONE:
                job._next_beat = time.monotonic() + min(interval, 1.0)
                _log(logging.WARNING, "heartbeat failed; retrying", job_id=job.id, code=e.code, error=e.message)
                return
            with self._cond:
                if job._abandoned:
                    return
                self._held.pop(job.id, None)
                started = not job._done
            job._cancel(e.code)
            level = logging.DEBUG if not started else logging.INFO if e.code == "job_canceled" else logging.WARNING
            _log(level, "job is no longer ours", job_id=job.id, reason=e.code)
            return
        job._next_beat = time.monotonic() + interval
        token = view.get("lease_token")
        if token and token != job.get("lease_token"):
            job["lease_token"] = token

    # ---------- acks ----------

    def _submit(self, outcome: _Outcome) -> None:
        with self._ack_cond:
            self._acks.append(outcome)
            if len(self._acks) == 1 or len(self._acks) >= self.ack_batch:
                self._ack_cond.notify_all()

    def _ack_loop(self) -> None:
        while True:
            with self._ack_cond:
                while not self._acks and not self._ack_stop:
                    self._ack_cond.wait()
                if not self._acks:
                    return
                # Wait for a full batch, or until the oldest outcome is ack_interval old.
                while len(self._acks) < self.ack_batch and not self._ack_stop:
                    left = self._acks[0].queued_at + self.ack_interval - time.monotonic()
                    if left <= 0:
                        break
                    self._ack_cond.wait(left)
                n = min(len(self._acks), self.ack_batch)
                batch = [self._acks.popleft() for _ in range(n)]
            self._send(batch)

    def _past_deadline(self) -> bool:
        d = self._ack_deadline
        return d is not None and time.monotonic() > d

    def _send(self, batch: List[_Outcome]) -> None:
        delay = 0.1
        while batch:
            try:
                if self._ack_supported:
                    answers = self.client.ack(self.worker_id, [o.item for o in batch])
                    for o, a in zip(batch, answers):
                        self._answered(o, a)
                    return
                self._send_singly(batch)
                return
            except (NotFound, MethodNotAllowed) as e:
                if e.code in ("not_found", "method_not_allowed") and self._ack_supported:
                    _log(logging.WARNING, "the server has no ack route; completing jobs one by one", code=e.code)
                    self._ack_supported = False
                    continue
                raise
            except (InvalidPayload, PayloadTooLarge) as e:
                # One bad item (e.g. a result the server refuses) must not sink the others.
                _log(logging.WARNING, "ack batch refused; sending its items one by one", code=e.code, error=e.message)
                self._send_singly(batch)
                return
            except _RETRY_SOON as e:
                for o in batch:
                    o.retried = True
                if self._past_deadline():
                    self._give_up(batch, e)
                    return
                _log(logging.WARNING, "ack failed; retrying", count=len(batch), code=e.code, retry_in_s=delay)
                self._ack_sleep(delay)
                delay = min(delay * 2, 5.0)
            except WpLiteError as e:
                self._give_up(batch, e)
                return

    def _ack_sleep(self, seconds: float) -> None:
        with self._ack_cond:
            end = time.monotonic() + seconds
            if self._ack_deadline is not None:
                end = min(end, self._ack_deadline)
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._ack_cond.wait(left)

    def _give_up(self, batch: List[_Outcome], e: WpLiteError) -> None:
        for o in batch:
            _log(logging.ERROR, "could not report outcome", job_id=o.job.id, outcome=o.item["outcome"], code=e.code, error=e.message)
            self._finish(o, ok=False, status=None, refused=e.code)

    def _send_singly(self, batch: List[_Outcome]) -> None:
        for o in batch:
            delay = 0.1
            while True:
                try:
                    view = self._send_one(o.item)
                    self._finish(o, ok=True, status=view.get("status"), refused=None)
                    break
                except InvalidPayload as e:
                    if o.item["outcome"] == "complete":
                        # The server refuses the result (too deep, too large, ...): fail
                        # the job for good instead, saying why.
                        o.item = {
                            "job_id": o.item["job_id"],
                            "lease_token": o.item.get("lease_token"),
                            "outcome": "fail",
                            "error": _clean_text(f"the server refused the handler's result: {e.message}", MAX_ERROR_CHARS),
                            "retryable": False,
                        }
                        continue
                    self._give_up([o], e)
                    break
                except (Conflict, NotFound) as e:
                    self._refused(o, e.code, e.message)
                    break
                except _RETRY_SOON as e:
                    o.retried = True
                    if self._past_deadline():
                        self._give_up([o], e)
                        break
                    self._ack_sleep(delay)
                    delay = min(delay * 2, 5.0)
                except WpLiteError as e:
                    self._give_up([o], e)
                    break

    def _send_one(self, item: Dict[str, Any]) -> Job:
        if not self._ack_supported:
            if item["outcome"] == "complete":
                return self.client.complete(item["job_id"], self.worker_id, item.get("result"), item.get("lease_token"))
            return self.client.fail(
                item["job_id"],
                self.worker_id,
                item["error"],
                retryable=bool(item.get("retryable")),
                details=item.get("details"),
                lease_token=item.get("lease_token"),
            )
        answer = self.client.ack(self.worker_id, [item])[0]
        if answer.get("ok"):
            return answer["job"]  # type: ignore[no-any-return]
        raise error_from_item(answer.get("error") or {})

    def _answered(self, o: _Outcome, answer: Dict[str, Any]) -> None:
        if answer.get("ok"):
            self._finish(o, ok=True, status=(answer.get("job") or {}).get("status"), refused=None)
        else:
            err = answer.get("error") or {}
            self._refused(o, str(err.get("code")), str(err.get("message")))

    def _refused(self, o: _Outcome, code: str, message: str) -> None:
        if code == "job_not_leased" and o.retried:
            # An earlier attempt whose answer was lost most likely went through.
            _log(logging.INFO, "outcome already recorded by an earlier attempt", job_id=o.job.id, code=code)
        else:
            _log(logging.WARNING, "outcome refused; result dropped", job_id=o.job.id, code=code, error=message)
        self._finish(o, ok=False, status=None, refused=code)

    def _finish(self, o: _Outcome, ok: bool, status: Optional[str], refused: Optional[str]) -> None:
        with self._cond:
            self._held.pop(o.job.id, None)
        item = o.item
        if ok and log.isEnabledFor(logging.DEBUG):
            _log(logging.DEBUG, "job reported", job_id=o.job.id, outcome=item["outcome"], status=status)
        if self._finished_callbacks:
            f = Finished(
                job=o.job,
                outcome=item["outcome"],
                ok=ok,
                status=status,
                error=item.get("error"),
                refused=refused,
            )
            for cb in self._finished_callbacks:
                try:
                    cb(f)
                except Exception:  # noqa: BLE001 - a callback must not stop the acks
                    log.warning("on_finished callback raised", exc_info=True)
