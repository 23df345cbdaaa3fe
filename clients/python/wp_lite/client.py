"""The HTTP client: one method per job route of the wp-lite API.

Standard library only: :mod:`http.client` keep-alive connections, one per thread.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import os
import select
import socket
import threading
import time
import urllib.parse
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._version import __version__
from .errors import (
    Timeout,
    TransportError,
    WpLiteError,
    error_from_response,
)

__all__ = ["Client", "Job", "JobPage", "AckItem", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"

JSONDict = Dict[str, Any]

#: Fields an enqueue body may carry besides ``type`` and ``input``.
ENQUEUE_FIELDS = frozenset(
    {
        "job_id",
        "priority",
        "max_attempts",
        "available_at",
        "delay_seconds",
        "idempotency_key",
        "code_version",
        "model_version",
        "config_hash",
        "cost_cap_eur",
        "budget_tag",
    }
)


class Job(dict):  # type: ignore[type-arg]
    """A job as the server shows it (a plain ``dict`` of the job view: ``job_id``,
    ``type``, ``status``, ``input``, ``result``, ``attempts``, ...).

    ``replayed`` is ``True`` only on the answer of an :meth:`Client.enqueue` whose
    ``idempotency_key`` had already been used with an equal input (the server answered
    200 with ``Idempotent-Replayed: true`` and the existing job) and ``False`` otherwise.
    """

    __slots__ = ("replayed",)

    def __init__(self, *args: Any, replayed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replayed = replayed

    @property
    def id(self) -> str:
        """The job's ``job_id``."""
        return str(self["job_id"])

    def __repr__(self) -> str:
        extra = ", replayed=True" if self.replayed else ""
        return f"Job({dict.__repr__(self)}{extra})"


class JobPage(NamedTuple):
    """One page of :meth:`Client.list_jobs`: the jobs, newest first, and the cursor of
    the next page (``None`` on the last one)."""

    items: List[Job]
    next_cursor: Optional[str]


AckItem = Mapping[str, Any]
"""An ``ack`` item: ``{"job_id", "lease_token"?, "outcome": "complete"|"fail",
"result"? | "error", "retryable"?, "details"?}``."""


class _Response(NamedTuple):
    status: int
    body: Any
    replayed: bool


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return _timestamp(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encode(body: Any) -> bytes:
    return json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode("utf-8")


def _timestamp(value: Union[str, _dt.datetime]) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a time zone (the server refuses naive times)")
    return value.isoformat()


def _is_dropped(sock: Optional[socket.socket]) -> bool:
    """True when an idle keep-alive socket is readable: the server closed it (EOF) or
    sent something unasked, so it cannot carry another request."""
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(sock, select.POLLIN)
            return bool(p.poll(0))
        r, _, _ = select.select([sock], [], [], 0)
        return bool(r)
    except (OSError, ValueError):
        return True


class _NoAnswer(ConnectionResetError):
    """The connection ended (EOF or reset) before the first byte of an answer's status
    line: the server never answered this request."""


class _HTTPResponse(http.client.HTTPResponse):
    """Tells a connection that ended before the answer began (:class:`_NoAnswer`) from
    one that broke in the middle of an answer."""

    _status_seen = False

    def _read_status(self) -> Tuple[str, int, str]:
        if self._status_seen:  # after a 100 Continue: the answer has begun
            return super()._read_status()  # type: ignore[misc,no-any-return]
        try:
            status: Tuple[str, int, str] = super()._read_status()  # type: ignore[misc]
        except ConnectionResetError as e:  # RemoteDisconnected (EOF) or ECONNRESET
            raise _NoAnswer(str(e) or type(e).__name__) from e
        self._status_seen = True
        return status


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _HTTPResponse
    idle_since = 0.0  # time.monotonic() when the last answer was read


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _HTTPResponse
    idle_since = 0.0


_Conn = Union[_HTTPConnection, _HTTPSConnection]


def _path_id(job_id: str) -> str:
    return urllib.parse.quote(str(job_id), safe="")


class Client:
    """A client of one wp-lite server.

    ``base_url`` like ``http://127.0.0.1:8000`` (a path prefix is kept), ``token`` the
    admin or worker token (sent as ``Authorization: Bearer``), ``timeout`` the seconds a
    call may take (a long-poll :meth:`lease` gets ``wait_ms`` on top).

    Thread safe: every thread gets its own keep-alive connection. A kept-alive
    connection idle for more than ``max_idle`` seconds is not reused (the server closes
    idle ones, after 60 s by default), and one the server already closed is noticed
    before use. When a request on a reused connection still meets a connection the
    server closed while idle — it ends (EOF or reset) before any byte of an answer, or
    the send fails with a broken pipe or a reset — the request is sent once more on a
    new connection, whatever the call: the server closes only connections between
    requests, so it never saw that one.

    Calls that are safe to repeat (reads, :meth:`heartbeat`, :meth:`enqueue` with an
    ``idempotency_key``, ...) are retried ``retries`` times with a short backoff when the
    connection fails otherwise; any call is retried when the connection could not even
    be opened (nothing was sent). Others raise :class:`~wp_lite.errors.TransportError`
    at once, since the server may have acted on them. Error answers raise the typed
    exceptions of :mod:`wp_lite.errors`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: Optional[str] = None,
        timeout: float = 30.0,
        *,
        retries: int = 2,
        retry_backoff: float = 0.1,
        max_idle: float = 30.0,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], not {base_url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.base_url = base_url.strip().rstrip("/")
        self.token = token
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.retry_backoff = float(retry_backoff)
        self.max_idle = float(max_idle)
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers: Dict[str, str] = {
            "Accept": "application/json",
            "User-Agent": f"wp-lite-python/{__version__}",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every thread's connection, so close() reaches them all and connections of
        # threads that ended are closed (not left to the garbage collector).
        self._conns: Dict[threading.Thread, _Conn] = {}

    @classmethod
    def from_env(
        cls, url: Optional[str] = None, token: Optional[str] = None, **kwargs: Any
    ) -> "Client":
        """A client from ``WP_LITE_URL`` (default ``http://127.0.0.1:8000``) and
        ``WP_LITE_TOKEN`` (or ``WP_LITE_WORKER_TOKEN``); arguments given win."""
        url = url or os.environ.get("WP_LITE_URL") or DEFAULT_URL
        token = token or os.environ.get("WP_LITE_TOKEN") or os.environ.get("WP_LITE_WORKER_TOKEN")
        return cls(url, token, **kwargs)

    def clone(self) -> "Client":
        """A new client with the same settings and its own connections."""
        return Client(
            self.base_url,
            self.token,
            self.timeout,
            retries=self.retries,
            retry_backoff=self.retry_backoff,
            max_idle=self.max_idle,
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------- plumbing ----------

    def _new_conn(self) -> _Conn:
        if self._scheme == "https":
            return _HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return _HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _conn(self) -> _Conn:
        conn: Optional[_Conn] = getattr(self._local, "conn", None)
        if conn is None:
            self._close_dead()
            conn = self._new_conn()
            self._local.conn = conn
            with self._lock:
                self._conns[threading.current_thread()] = conn
        return conn

    def _close_dead(self) -> None:
        """Closes the connections of threads that have ended."""
        with self._lock:
            dead = [t for t in self._conns if not t.is_alive()]
            ended = [self._conns.pop(t) for t in dead]
        for c in ended:
            c.close()

    def close(self) -> None:
        """Closes every connection of this client, also those of other threads (a call
        blocked on one, e.g. a long poll, fails with ``TransportError`` at once). The
        client stays usable: the next call opens a new connection."""
        with self._lock:
            conns = list(self._conns.values())
            for t in [t for t in self._conns if not t.is_alive()]:
                del self._conns[t]
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        idempotent: Optional[bool] = None,
    ) -> Any:
        """Any route: returns the decoded JSON answer (``None`` for an empty one)."""
        return self._call(method, path, body, query=query, timeout=timeout, idempotent=idempotent).body

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        idempotent: Optional[bool] = None,
    ) -> _Response:
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        url = self._prefix + path
        if query:
            pairs = [(k, v) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        headers = self._headers
        data: Optional[bytes] = None
        if body is not None:
            data = _encode(body)
            headers = dict(headers)
            headers["Content-Type"] = "application/json"
        t = self.timeout if timeout is None else timeout
        attempt = 0
        resent = False
        while True:
            conn = self._conn()
            sent = False
            reused = False
            try:
                if conn.sock is not None and (
                    time.monotonic() - conn.idle_since > self.max_idle or _is_dropped(conn.sock)
                ):
                    conn.close()
                if conn.sock is None:
                    conn.timeout = t
                    conn.connect()
                else:
                    reused = True
                    conn.sock.settimeout(t)
                sent = True
                cut = False
                try:
                    conn.request(method, url, body=data, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The server may have answered before reading the whole body (413)
                    # and closed; read that answer if it is there. If there is none,
                    # getresponse raises _NoAnswer.
                    cut = True
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
                replayed = (resp.getheader("Idempotent-Replayed") or "").lower() == "true"
                retry_after_h = resp.getheader("Retry-After") if status >= 400 else None
                if cut:
                    conn.close()
                conn.idle_since = time.monotonic()
            except socket.timeout as e:
                conn.close()
                raise Timeout(f"{method} {path}: no answer within {t:g} s") from e
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and not resent and isinstance(e, _NoAnswer):
                    # A kept-alive connection the server closed while it was idle (the
                    # close crossed our request): it never processed this request, so
                    # any call may go again, once, on a new connection.
                    resent = True
                    continue
                if attempt < self.retries and (idempotent or not sent):
                    time.sleep(min(self.retry_backoff * (2**attempt), 1.0))
                    attempt += 1
                    continue
                raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from e
            break
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
        if status >= 400:
            retry_after: Optional[float] = None
            if retry_after_h:
                try:
                    retry_after = float(retry_after_h)
                except ValueError:
                    retry_after = None
            raise error_from_response(status, parsed, retry_after)
        if isinstance(parsed, str):
            raise WpLiteError(
                f"{method} {path}: the answer is not JSON: {parsed[:200]!r}", status=status, code="bad_response"
            )
        return _Response(status, parsed, replayed)

    # ---------- producers ----------

    def enqueue(self, type: str, input: Optional[Mapping[str, Any]] = None, **fields: Any) -> Job:
        """``POST /v1/worker/jobs``: enqueues one job and returns it (``status`` queued).

        ``fields``: ``job_id``, ``priority`` (0–1000, lower first), ``max_attempts``,
        ``available_at`` (an aware ``datetime`` or RFC 3339 text) or ``delay_seconds``,
        ``idempotency_key``, ``code_version``, ``model_version``, ``config_hash``,
        ``cost_cap_eur``, ``budget_tag``. An unknown name is a ``TypeError``.

        With an ``idempotency_key`` already used for this type and an equal input the
        existing job comes back with ``job.replayed == True``; a different input raises
        :class:`~wp_lite.errors.IdempotencyConflict`. Retried on connection failures only
        when an ``idempotency_key`` makes that safe.
        """
        body = self._enqueue_body(type, input, fields)
        r = self._call("POST", "/v1/worker/jobs", body, idempotent="idempotency_key" in body)
        return Job(r.body, replayed=r.replayed)

    @staticmethod
    def _enqueue_body(type: str, input: Optional[Mapping[str, Any]], fields: Mapping[str, Any]) -> JSONDict:
        unknown = set(fields) - ENQUEUE_FIELDS
        if unknown:
            raise TypeError(f"unknown enqueue field(s): {', '.join(sorted(unknown))}")
        body: JSONDict = {"type": type, "input": {} if input is None else input}
        for k, v in fields.items():
            if v is None:
                continue
            if k == "available_at":
                v = _timestamp(v)
            body[k] = v
        return body

    def enqueue_batch(self, jobs: Iterable[Mapping[str, Any]]) -> List[Job]:
        """``POST /v1/worker/jobs/batch``: 1–1000 jobs, all or nothing, in the order given.

        Each item is an enqueue body: ``{"type", "input", ...fields}``. Retried on
        connection failures only when every item has an ``idempotency_key``.
        """
        items: List[JSONDict] = []
        for j in jobs:
            j = dict(j)
            t = j.pop("type")
            i = j.pop("input", None)
            items.append(self._enqueue_body(t, i, j))
        safe = bool(items) and all("idempotency_key" in i for i in items)
        r = self._call("POST", "/v1/worker/jobs/batch", {"jobs": items}, idempotent=safe)
        return [Job(j) for j in r.body["jobs"]]

    def get(self, job_id: str) -> Job:
        """``GET /v1/worker/jobs/{id}``; :class:`~wp_lite.errors.JobNotFound` if unknown."""
        return Job(self._call("GET", f"/v1/worker/jobs/{_path_id(job_id)}").body)

    # ---------- workers ----------

    def lease(
        self,
        worker_id: str,
        job_types: Optional[Sequence[str]] = None,
        limit: int = 1,
        lease_seconds: int = 600,
        wait_ms: int = 0,
    ) -> List[Job]:
        """``POST /v1/worker/jobs/lease``: up to ``limit`` (1–100) ready jobs of
        ``job_types`` (``None`` = any), each with its ``lease_token``. With ``wait_ms``
        (≤ 30 000) the server waits that long for work when none is ready (long poll).
        Never retried: a lease whose answer was lost would hold its jobs until the lease
        expires."""
        body = {
            "worker_id": worker_id,
            "job_types": list(job_types) if job_types else None,
            "limit": int(limit),
            "lease_seconds": int(lease_seconds),
            "wait_ms": int(wait_ms),
        }
        r = self._call(
            "POST",
            "/v1/worker/jobs/lease",
            body,
            timeout=self.timeout + max(0, wait_ms) / 1000.0,
            idempotent=False,
        )
        return [Job(j) for j in r.body["jobs"]]

    def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        lease_token: Optional[str] = None,
        lease_seconds: int = 600,
    ) -> Job:
        """``POST /v1/worker/jobs/{id}/heartbeat``: extends the lease to now +
        ``lease_seconds``. Raises :class:`~wp_lite.errors.LeaseLost`,
        :class:`~wp_lite.errors.JobCanceled` or :class:`~wp_lite.errors.JobNotLeased`
        when the job is no longer this worker's. Safe to repeat, so retried."""
        body: JSONDict = {"worker_id": worker_id, "lease_seconds": int(lease_seconds)}
        if lease_token is not None:
            body["lease_token"] = lease_token
        return Job(
            self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/heartbeat", body, idempotent=True).body
        )

    def complete(
        self,
        job_id: str,
        worker_id: str,
        result: Optional[Mapping[str, Any]] = None,
        lease_token: Optional[str] = None,
    ) -> Job:
        """``POST /v1/worker/jobs/{id}/complete`` → the job, ``succeeded``."""
        body: JSONDict = {"worker_id": worker_id, "result": result}
        if lease_token is not None:
            body["lease_token"] = lease_token
        return Job(self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/complete", body).body)

    def fail(
        self,
        job_id: str,
        worker_id: str,
        error: str,
        retryable: bool = False,
        details: Optional[Mapping[str, Any]] = None,
        lease_token: Optional[str] = None,
    ) -> Job:
        """``POST /v1/worker/jobs/{id}/fail`` → the job: ``queued`` (retry scheduled
        after the server's backoff) or ``failed``."""
        body: JSONDict = {"worker_id": worker_id, "error": error, "retryable": bool(retryable)}
        if details is not None:
            body["details"] = details
        if lease_token is not None:
            body["lease_token"] = lease_token
        return Job(self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/fail", body).body)

    def release(self, job_id: str, worker_id: str, lease_token: Optional[str] = None) -> Job:
        """``POST /v1/worker/jobs/{id}/release``: gives the lease back unused → the job,
        ``queued`` again and available at once, its attempt not counted (``attempts``
        goes back down by one; the history gets a ``released`` event).

        Fenced like :meth:`complete`: :class:`~wp_lite.errors.JobNotLeased` (not leased by
        ``worker_id``), :class:`~wp_lite.errors.LeaseLost` (``lease_token`` no longer
        holds, e.g. released already), :class:`~wp_lite.errors.JobCanceled`,
        :class:`~wp_lite.errors.JobNotFound`. A server older than this route answers
        :class:`~wp_lite.errors.NotFound` with ``code == "not_found"`` (not
        ``job_not_found``)."""
        body: JSONDict = {"worker_id": worker_id}
        if lease_token is not None:
            body["lease_token"] = lease_token
        return Job(self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/release", body).body)

    def ack(self, worker_id: str, items: Sequence[AckItem]) -> List[JSONDict]:
        """``POST /v1/worker/jobs/ack``: finishes 1–1000 leased jobs in one call.

        Returns one answer per item, in order: ``{"job_id", "ok": True, "job": Job}`` or
        ``{"job_id", "ok": False, "error": {"code", "message"}}``
        (:func:`wp_lite.errors.error_from_item` makes the typed exception of a refusal).
        """
        r = self._call("POST", "/v1/worker/jobs/ack", {"worker_id": worker_id, "items": list(items)})
        out: List[JSONDict] = r.body["items"]
        for item in out:
            if item.get("ok") and isinstance(item.get("job"), dict):
                item["job"] = Job(item["job"])
        return out

    # ---------- admin ----------

    def list_jobs(
        self,
        status: Optional[str] = None,
        type: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> JobPage:
        """``GET /v1/worker/jobs``: one page (``limit`` 1–200, default 50), newest first.
        Pass the page's ``next_cursor`` as ``cursor`` for the next one, or use
        :meth:`iter_jobs`."""
        q = {"status": status, "type": type, "limit": limit, "cursor": cursor}
        body = self._call("GET", "/v1/worker/jobs", query=q).body
        return JobPage([Job(j) for j in body["items"]], body.get("next_cursor"))

    def iter_jobs(
        self, status: Optional[str] = None, type: Optional[str] = None, page_size: int = 200
    ) -> Iterator[Job]:
        """Every job matching the filter, newest first, following the cursors."""
        cursor: Optional[str] = None
        while True:
            page = self.list_jobs(status=status, type=type, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def events(self, job_id: str) -> List[JSONDict]:
        """``GET /v1/worker/jobs/{id}/events``: the history, ``[{"id", "ts", "event", "details"}]``."""
        return list(self._call("GET", f"/v1/worker/jobs/{_path_id(job_id)}/events").body["items"])

    def cancel(self, job_id: str) -> Job:
        """``POST /v1/worker/jobs/{id}/cancel`` (queued or leased → canceled);
        :class:`~wp_lite.errors.InvalidStatus` otherwise."""
        return Job(self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/cancel").body)

    def retry(self, job_id: str) -> Job:
        """``POST /v1/worker/jobs/{id}/retry`` (failed or canceled → queued, available
        at once); :class:`~wp_lite.errors.InvalidStatus` otherwise."""
        return Job(self._call("POST", f"/v1/worker/jobs/{_path_id(job_id)}/retry").body)

    @staticmethod
    def _bulk_filter(
        status: Optional[str], type: Optional[str], job_ids: Optional[Sequence[str]]
    ) -> JSONDict:
        body: JSONDict = {}
        if status is not None:
            body["status"] = status
        if type is not None:
            body["type"] = type
        if job_ids is not None:
            body["job_ids"] = list(job_ids)
        if not body:
            raise ValueError("give at least one of status, type and job_ids")
        return body

    def bulk_retry(
        self,
        status: Optional[str] = None,
        type: Optional[str] = None,
        job_ids: Optional[Sequence[str]] = None,
    ) -> int:
        """``POST /v1/worker/jobs/actions/retry``: retries the failed/canceled jobs
        matching the filter; returns how many changed."""
        body = self._bulk_filter(status, type, job_ids)
        return int(self._call("POST", "/v1/worker/jobs/actions/retry", body).body["updated"])

    def bulk_cancel(
        self,
        status: Optional[str] = None,
        type: Optional[str] = None,
        job_ids: Optional[Sequence[str]] = None,
    ) -> int:
        """``POST /v1/worker/jobs/actions/cancel``: cancels the queued/leased jobs
        matching the filter; returns how many changed."""
        body = self._bulk_filter(status, type, job_ids)
        return int(self._call("POST", "/v1/worker/jobs/actions/cancel", body).body["updated"])

    def queues(self) -> List[JSONDict]:
        """``GET /v1/worker/queues``: per type ``{"type", "counts": {"queued", "leased",
        "succeeded", "failed", "canceled"}, "oldest_queued_age_seconds",
        "leases_expired_total", ...}``."""
        return list(self._call("GET", "/v1/worker/queues").body["items"])

    def ready(self) -> bool:
        """``GET /readyz``: whether the server is up and ready (never raises for a 503
        or a connection failure)."""
        try:
            self._call("GET", "/readyz", idempotent=False)
            return True
        except WpLiteError:
            return False
