"""Kept-alive connections the server closes while idle: every call, non-idempotent ones
included, goes through; and only a request the server never began to answer is sent
again."""

from __future__ import annotations

import socket
import threading
import time
import unittest
import uuid
from typing import Any, Iterator, List
from unittest import mock

from .support import ServerTestCase

import wp_lite.client as client_module
from wp_lite import Client, TransportError

IDLE = 1.0  # the server's --idle-timeout in these tests


class _ConnectCounter:
    """Counts the connections a client opens (patches both connection classes)."""

    def __init__(self) -> None:
        self.count = 0
        self._http = client_module._HTTPConnection.connect

    def __enter__(self) -> "_ConnectCounter":
        real = self._http

        def connect(conn: Any) -> None:
            self.count += 1
            real(conn)

        self._patch = mock.patch.object(client_module._HTTPConnection, "connect", connect)
        self._patch.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._patch.stop()


class IdleConnectionsClosedByTheServer(ServerTestCase):
    server_args = ("--idle-timeout", f"{IDLE:g}s")

    def setUp(self) -> None:
        self.type = f"ka.{uuid.uuid4().hex[:8]}"
        # retries=0: nothing may pass through the ordinary retries of safe calls.
        self.w = self.server.worker_client(retries=0)
        self.addCleanup(self.w.close)

    def idle(self) -> None:
        time.sleep(IDLE + 0.3)

    def test_calls_after_the_server_closed_the_idle_connection(self) -> None:
        self.w.get(self.w.enqueue(self.type, {"i": 0}).id)
        self.idle()
        self.w.enqueue(self.type, {"i": 1})  # no idempotency key: never retried otherwise
        got = self.w.lease("w1", [self.type], limit=2)
        self.assertEqual(len(got), 2)
        self.w.complete(got[0].id, "w1", {"ok": True}, lease_token=got[0]["lease_token"])
        self.idle()
        answers = self.w.ack("w1", [{"job_id": got[1].id, "lease_token": got[1]["lease_token"], "outcome": "complete"}])
        self.assertTrue(answers[0]["ok"], answers)
        counts = self.counts(self.type)
        self.assertEqual((counts["succeeded"], counts["queued"]), (2, 0))  # each enqueue once

    def test_a_request_sent_on_the_closed_connection_goes_again_once(self) -> None:
        # Without the check before use, each call after an idle pause goes out on the
        # connection the server has closed, and must be sent again on a new one.
        with mock.patch.object(client_module, "_is_dropped", lambda sock: False), _ConnectCounter() as c:
            self.w.enqueue(self.type, {"i": 0})
            self.idle()
            self.w.enqueue(self.type, {"i": 1})  # no idempotency key
            self.idle()
            got = self.w.lease("w1", [self.type], limit=2)
            self.assertEqual(len(got), 2)
            self.idle()
            done = self.w.complete(got[0].id, "w1", {"ok": True}, lease_token=got[0]["lease_token"])
            self.assertEqual(done["status"], "succeeded")
            self.idle()
            item = {"job_id": got[1].id, "lease_token": got[1]["lease_token"], "outcome": "complete"}
            self.assertTrue(self.w.ack("w1", [item])[0]["ok"])
            self.assertEqual(c.count, 5)  # the first connection, then one new per pause
        counts = self.counts(self.type)
        self.assertEqual((counts["succeeded"], counts["queued"]), (2, 0))  # each enqueue once

    def test_connections_idle_longer_than_max_idle_are_not_reused(self) -> None:
        with Client(self.server.base_url, self.server.admin().token, max_idle=0.2) as a:
            with _ConnectCounter() as c:
                a.queues()
                a.queues()
                self.assertEqual(c.count, 1)
                time.sleep(0.3)
                a.queues()
                self.assertEqual(c.count, 2)


class FakeServer:
    """A listening socket that answers each request as its script says: ``"ok"`` (200
    with a small JSON body, kept alive), ``"close"`` (closes without a byte),
    ``"partial"`` (the start of a status line, then closes)."""

    def __init__(self, script: List[str]) -> None:
        self.script = list(script)
        self.requests = 0
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)  # so close() ends the accept loop promptly
        self._closed = False
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self._threads: List[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    @staticmethod
    def _requests(conn: socket.socket) -> Iterator[bytes]:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            yield head + b"\r\n\r\n" + body

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            for _ in self._requests(conn):
                self.requests += 1
                action = self.script.pop(0) if self.script else "ok"
                if action == "close":
                    return
                if action == "partial":
                    conn.sendall(b"HTTP/1.1 2")
                    return
                body = b'{"jobs":[]}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )

    def close(self) -> None:
        self._closed = True
        self._accept.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(5)


class ResendOnlyWhatWasNeverAnswered(unittest.TestCase):
    """Against a fake server, so each case happens every time (no timing)."""

    def serve(self, script: List[str]) -> Client:
        server = FakeServer(script)
        self.addCleanup(server.close)
        self.server = server
        c = Client(server.url, "t", retries=2, retry_backoff=0.01, timeout=5)
        self.addCleanup(c.close)
        return c

    def test_a_reused_connection_closed_before_the_answer_is_resent_once(self) -> None:
        c = self.serve(["ok", "close"])
        c.lease("w1")
        self.assertEqual(c.lease("w1"), [])  # closed unanswered, then sent on a new one
        self.assertEqual((self.server.requests, self.server.connections), (3, 2))

    def test_resent_once_only(self) -> None:
        c = self.serve(["ok", "close", "close"])
        c.lease("w1")
        with self.assertRaises(TransportError):
            c.lease("w1")
        self.assertEqual(self.server.requests, 3)

    def test_a_new_connection_closed_before_the_answer_is_not_resent(self) -> None:
        c = self.serve(["close"])
        with self.assertRaises(TransportError):
            c.lease("w1")  # not idempotent: the server may have acted on it
        self.assertEqual(self.server.requests, 1)

    def test_an_answer_cut_short_is_not_resent(self) -> None:
        c = self.serve(["ok", "partial"])
        c.lease("w1")
        with self.assertRaises(TransportError):
            c.lease("w1")
        self.assertEqual(self.server.requests, 2)

    def test_idempotent_calls_keep_their_ordinary_retries(self) -> None:
        c = self.serve(["close", "close"])
        self.assertEqual(c.request("GET", "/x"), {"jobs": []})
        self.assertEqual(self.server.requests, 3)
