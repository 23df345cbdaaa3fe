"""Client round trips and every typed exception, from real server answers."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import uuid

from .support import ADMIN, ServerTestCase

import wp_lite
from wp_lite import (
    Client,
    Conflict,
    DuplicateJobId,
    Forbidden,
    IdempotencyConflict,
    InvalidPayload,
    InvalidStatus,
    JobCanceled,
    JobNotFound,
    JobNotLeased,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    TransportError,
    Unauthorized,
    WpLiteError,
    error_from_item,
)

MAX_BODY = 64 * 1024


class ClientRoundTrips(ServerTestCase):
    server_args = ("--max-body-bytes", str(MAX_BODY))

    def setUp(self) -> None:
        self.w = self.server.worker_client()
        self.addCleanup(self.w.close)
        self.type = f"rt.{uuid.uuid4().hex[:8]}"

    def test_enqueue_lease_complete(self) -> None:
        job = self.w.enqueue(self.type, {"n": 1}, priority=3, max_attempts=5, code_version="v1", budget_tag="b")
        self.assertIsInstance(job, dict)
        self.assertFalse(job.replayed)
        self.assertEqual((job["status"], job["priority"], job["max_attempts"]), ("queued", 3, 5))
        self.assertEqual((job["code_version"], job["budget_tag"], job["input"]), ("v1", "b", {"n": 1}))
        self.assertEqual(self.w.get(job.id)["status"], "queued")

        leased = self.w.lease("w1", [self.type], limit=10, lease_seconds=30)
        self.assertEqual([j.id for j in leased], [job.id])
        got = leased[0]
        self.assertEqual((got["status"], got["attempts"], got["lease_owner"]), ("leased", 1, "w1"))
        self.assertTrue(got["lease_token"])

        beat = self.w.heartbeat(got.id, "w1", got["lease_token"], lease_seconds=120)
        self.assertGreater(beat["lease_until"], got["lease_until"])

        done = self.w.complete(got.id, "w1", {"ok": True}, lease_token=got["lease_token"])
        self.assertEqual((done["status"], done["result"]), ("succeeded", {"ok": True}))
        self.assertNotIn("lease_token", done)
        with self.assertRaises(JobNotLeased) as cm:  # completing twice is a 409, never a transition
            self.w.complete(got.id, "w1", {"ok": True}, lease_token=got["lease_token"])
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "job_not_leased"))

    def test_fail_retryable_then_final(self) -> None:
        job = self.w.enqueue(self.type, {}, max_attempts=2)
        got = self.w.lease("w1", [self.type])[0]
        again = self.w.fail(got.id, "w1", "SMTP 451", retryable=True, details={"code": 451}, lease_token=got["lease_token"])
        self.assertEqual((again["status"], again["last_error"]), ("queued", "SMTP 451"))
        self.assertGreater(again["available_at"], got["available_at"])  # the server's backoff
        self.assertEqual(self.w.lease("w1", [self.type]), [])  # not available yet
        self.admin.cancel(job.id)
        self.admin.retry(job.id)  # available at once
        got = self.w.lease("w1", [self.type])[0]
        self.assertEqual(got["attempts"], 2)
        final = self.w.fail(got.id, "w1", "boom", retryable=False, details={"x": 1}, lease_token=got["lease_token"])
        self.assertEqual(final["status"], "failed")
        self.assertEqual(final["result"], {"error": "boom", "details": {"x": 1}})

    def test_idempotent_replay_is_surfaced(self) -> None:
        first = self.w.enqueue(self.type, {"a": 1, "b": [1, 2]}, idempotency_key="k-1")
        again = self.w.enqueue(self.type, {"b": [1.0, 2], "a": 1}, idempotency_key="k-1")
        self.assertFalse(first.replayed)
        self.assertTrue(again.replayed)
        self.assertEqual(again.id, first.id)
        self.assertIn("replayed=True", repr(again))
        with self.assertRaises(IdempotencyConflict) as cm:
            self.w.enqueue(self.type, {"a": 2}, idempotency_key="k-1")
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "idempotency_conflict"))
        self.assertIsInstance(cm.exception, Conflict)

    def test_enqueue_batch_keeps_order(self) -> None:
        jobs = self.w.enqueue_batch(
            [{"type": self.type, "input": {"i": i}, "priority": 10 - i} for i in range(10)]
        )
        self.assertEqual([j["input"]["i"] for j in jobs], list(range(10)))
        self.assertTrue(all(isinstance(j, wp_lite.Job) and j["status"] == "queued" for j in jobs))
        leased = self.w.lease("w1", [self.type], limit=100)
        self.assertEqual([j["input"]["i"] for j in leased], list(range(9, -1, -1)))  # priority order
        with self.assertRaises(InvalidPayload):
            self.w.enqueue_batch([])

    def test_release_gives_the_lease_back_without_counting_the_attempt(self) -> None:
        job = self.w.enqueue(self.type, {})
        got = self.w.lease("w1", [self.type], lease_seconds=300)[0]
        self.assertEqual(got["attempts"], 1)
        back = self.w.release(got.id, "w1", lease_token=got["lease_token"])
        self.assertIsInstance(back, wp_lite.Job)
        self.assertEqual((back["status"], back["attempts"], back["lease_owner"]), ("queued", 0, None))
        self.assertNotIn("lease_token", back)
        self.assertLessEqual(back["available_at"], back["updated_at"])  # available at once
        events = self.admin.events(job.id)
        self.assertEqual([e["event"] for e in events], ["queued", "leased", "released"])
        self.assertEqual(events[-1]["details"], {"worker_id": "w1"})
        again = self.w.lease("w2", [self.type])[0]  # at once, and still the first attempt
        self.assertEqual((again.id, again["attempts"]), (job.id, 1))
        self.assertNotEqual(again["lease_token"], got["lease_token"])
        # An admin token may release too, and without a lease_token the worker_id fences.
        self.assertEqual(self.admin.release(job.id, "w2")["status"], "queued")

    def test_release_is_fenced_like_complete(self) -> None:
        job = self.w.enqueue(self.type, {})
        with self.assertRaises(JobNotLeased):  # queued, not leased
            self.w.release(job.id, "w1")
        got = self.w.lease("w1", [self.type])[0]
        token = got["lease_token"]
        with self.assertRaises(JobNotLeased):
            self.w.release(job.id, "someone-else")
        with self.assertRaises(LeaseLost):  # a token that is not the lease's
            self.w.release(job.id, "w1", lease_token="not-the-token")
        self.assertEqual(self.w.get(job.id)["status"], "leased")  # refusals change nothing
        self.w.release(job.id, "w1", lease_token=token)
        with self.assertRaises(LeaseLost):  # twice: that lease is over
            self.w.release(job.id, "w1", lease_token=token)
        with self.assertRaises(LeaseLost):  # complete after release: the lease is gone
            self.w.complete(job.id, "w1", {}, lease_token=token)
        got = self.w.lease("w1", [self.type])[0]
        self.admin.cancel(job.id)
        with self.assertRaises(JobCanceled) as cm:
            self.w.release(job.id, "w1", lease_token=got["lease_token"])
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "job_canceled"))
        with self.assertRaises(JobNotFound) as nf:
            self.w.release(str(uuid.uuid4()), "w1")
        self.assertEqual((nf.exception.status, nf.exception.code), (404, "job_not_found"))
        with self.assertRaises(InvalidPayload) as bad:
            self.w.release(job.id, "")
        self.assertEqual(bad.exception.fields[0]["field"], "worker_id")
        with self.assertRaises(InvalidPayload):
            self.w.release("not-a-uuid", "w1")
        with self.assertRaises(InvalidPayload):
            self.w.request("POST", f"/v1/worker/jobs/{job.id}/release", [1])
        # What a server without the route answers: not_found, which is not job_not_found.
        with self.assertRaises(NotFound) as old:
            self.w.request("POST", f"/v1/worker/jobs/{job.id}/no-such-action", {"worker_id": "w1"})
        self.assertEqual((type(old.exception), old.exception.code), (NotFound, "not_found"))

    def test_ack_with_mixed_items(self) -> None:
        ids = [j.id for j in self.w.enqueue_batch([{"type": self.type, "input": {"i": i}} for i in range(4)])]
        leased = {j.id: j for j in self.w.lease("w1", [self.type], limit=3)}
        self.assertEqual(len(leased), 3)
        a, b, c = leased.values()
        unleased = next(i for i in ids if i not in leased)
        answers = self.w.ack(
            "w1",
            [
                {"job_id": a.id, "lease_token": a["lease_token"], "outcome": "complete", "result": {"ok": 1}},
                {"job_id": b.id, "lease_token": b["lease_token"], "outcome": "fail", "error": "nope", "retryable": False},
                {"job_id": c.id, "lease_token": "not-the-token", "outcome": "complete"},
                {"job_id": unleased, "outcome": "complete"},
            ],
        )
        self.assertEqual([x["job_id"] for x in answers], [a.id, b.id, c.id, unleased])
        self.assertEqual([x["ok"] for x in answers], [True, True, False, False])
        self.assertEqual(answers[0]["job"]["status"], "succeeded")
        self.assertEqual(answers[1]["job"]["status"], "failed")
        self.assertIsInstance(error_from_item(answers[2]["error"]), LeaseLost)
        refused = error_from_item(answers[3]["error"])
        self.assertIsInstance(refused, JobNotLeased)
        self.assertEqual(refused.status, 409)
        self.assertEqual(self.w.get(c.id)["status"], "leased")  # one refusal undoes nothing else

    def test_list_events_cancel_retry_bulk_and_queues(self) -> None:
        ids = [j.id for j in self.w.enqueue_batch([{"type": self.type, "input": {"i": i}} for i in range(7)])]
        page = self.admin.list_jobs(type=self.type, limit=3)
        self.assertEqual(len(page.items), 3)
        self.assertTrue(page.next_cursor)
        seen = [j.id for j in self.admin.iter_jobs(type=self.type, page_size=3)]
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertEqual(seen, list(reversed(ids)))  # newest first

        canceled = self.admin.cancel(ids[0])
        self.assertEqual(canceled["status"], "canceled")
        self.assertEqual(self.admin.retry(ids[0])["status"], "queued")
        self.assertEqual([e["event"] for e in self.admin.events(ids[0])], ["queued", "canceled", "retried"])

        self.assertEqual(self.admin.bulk_cancel(job_ids=ids[:4]), 4)
        self.assertEqual(self.admin.bulk_cancel(type=self.type, status="queued"), 3)
        self.assertEqual(self.admin.bulk_retry(type=self.type, status="canceled"), 7)
        self.assertEqual(self.admin.list_jobs(type=self.type, status="queued", limit=200).items.__len__(), 7)
        with self.assertRaises(ValueError):
            self.admin.bulk_retry()

        q = {x["type"]: x for x in self.admin.queues()}[self.type]
        self.assertEqual(q["counts"]["queued"], 7)
        self.assertIn("oldest_queued_age_seconds", q)

    def test_delayed_enqueue_with_an_aware_datetime(self) -> None:
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        job = self.w.enqueue(self.type, {}, available_at=later)
        self.assertTrue(job["available_at"].startswith(later.strftime("%Y-%m-%dT%H:%M")))
        self.assertEqual(self.w.lease("w1", [self.type]), [])
        with self.assertRaises(ValueError):
            self.w.enqueue(self.type, {}, available_at=dt.datetime.now())  # naive
        with self.assertRaises(TypeError):
            self.w.enqueue(self.type, {}, prority=1)  # a typo is not silently ignored

    def test_threads_share_a_client(self) -> None:
        errors = []

        def produce(n: int) -> None:
            try:
                for i in range(40):
                    self.w.enqueue(self.type, {"t": n, "i": i})
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(self.counts(self.type)["queued"], 240)

    def test_keep_alive_survives_an_idle_connection_closed_by_the_server(self) -> None:
        # A stale pooled connection must not fail a non-idempotent call: close the socket
        # under the client, as a server dropping an idle keep-alive connection would.
        self.w.enqueue(self.type, {})
        conn = self.w._conn()
        assert conn.sock is not None
        conn.sock.shutdown(socket.SHUT_RDWR)
        self.w.enqueue(self.type, {})
        self.assertEqual(self.counts(self.type)["queued"], 2)


class TypedErrors(ServerTestCase):
    """Each exception class from a real answer of the server."""

    server_args = ("--max-body-bytes", str(MAX_BODY))

    def setUp(self) -> None:
        self.w = self.server.worker_client()
        self.addCleanup(self.w.close)
        self.type = f"err.{uuid.uuid4().hex[:8]}"

    def check(self, err: WpLiteError, cls: type, status: int, code: str) -> None:
        self.assertIs(type(err), cls)
        self.assertEqual((err.status, err.code), (status, code))
        self.assertTrue(err.message)
        self.assertIn(code, str(err))

    def test_401_unauthorized(self) -> None:
        with Client(self.server.base_url, "wrong-token") as bad:
            with self.assertRaises(Unauthorized) as cm:
                bad.get(str(uuid.uuid4()))
        self.check(cm.exception, Unauthorized, 401, "unauthorized")
        with Client(self.server.base_url, None) as none:
            with self.assertRaises(Unauthorized):
                none.queues()

    def test_403_worker_token_on_an_admin_route(self) -> None:
        with self.assertRaises(Forbidden) as cm:
            self.w.queues()
        self.check(cm.exception, Forbidden, 403, "forbidden")
        with self.assertRaises(Forbidden):
            self.w.list_jobs()

    def test_404_job_not_found(self) -> None:
        with self.assertRaises(JobNotFound) as cm:
            self.w.get(str(uuid.uuid4()))
        self.check(cm.exception, JobNotFound, 404, "job_not_found")
        self.assertIsInstance(cm.exception, NotFound)
        with self.assertRaises(JobNotFound):
            self.w.heartbeat(str(uuid.uuid4()), "w1")
        with self.assertRaises(NotFound) as cm2:
            self.admin.request("GET", "/v1/no/such/route")
        self.assertEqual(cm2.exception.code, "not_found")

    def test_400_invalid_payload_with_fields(self) -> None:
        with self.assertRaises(InvalidPayload) as cm:
            self.w.enqueue(self.type, {}, priority=5000)
        self.check(cm.exception, InvalidPayload, 400, "invalid_payload")
        self.assertEqual(cm.exception.fields, [{"field": "priority", "message": "must be <= 1000"}])
        with self.assertRaises(InvalidPayload):
            self.w.enqueue("not a valid type!", {})
        with self.assertRaises(InvalidPayload):
            self.w.lease("w1", limit=101)

    def test_409_job_not_leased(self) -> None:
        job = self.w.enqueue(self.type, {})
        with self.assertRaises(JobNotLeased) as cm:
            self.w.complete(job.id, "w1")
        self.check(cm.exception, JobNotLeased, 409, "job_not_leased")

    def test_409_lease_lost(self) -> None:
        job = self.w.enqueue(self.type, {})
        first = self.w.lease("w1", [self.type])[0]
        self.admin.cancel(job.id)
        self.admin.retry(job.id)
        second = self.w.lease("w1", [self.type])[0]
        self.assertNotEqual(first["lease_token"], second["lease_token"])
        with self.assertRaises(LeaseLost) as cm:
            self.w.complete(job.id, "w1", {}, lease_token=first["lease_token"])
        self.check(cm.exception, LeaseLost, 409, "lease_lost")
        with self.assertRaises(LeaseLost):
            self.w.heartbeat(job.id, "w1", first["lease_token"])
        self.w.complete(job.id, "w1", {}, lease_token=second["lease_token"])

    def test_409_job_canceled(self) -> None:
        job = self.w.enqueue(self.type, {})
        got = self.w.lease("w1", [self.type])[0]
        self.admin.cancel(job.id)
        with self.assertRaises(JobCanceled) as cm:
            self.w.heartbeat(job.id, "w1", got["lease_token"])
        self.check(cm.exception, JobCanceled, 409, "job_canceled")
        with self.assertRaises(JobCanceled):
            self.w.fail(job.id, "w1", "x", lease_token=got["lease_token"])

    def test_409_invalid_status(self) -> None:
        job = self.w.enqueue(self.type, {})
        with self.assertRaises(InvalidStatus) as cm:
            self.admin.retry(job.id)
        self.check(cm.exception, InvalidStatus, 409, "invalid_status")

    def test_409_idempotency_conflict(self) -> None:
        self.w.enqueue(self.type, {"a": 1}, idempotency_key="same")
        with self.assertRaises(IdempotencyConflict) as cm:
            self.w.enqueue(self.type, {"a": 2}, idempotency_key="same")
        self.check(cm.exception, IdempotencyConflict, 409, "idempotency_conflict")

    def test_409_duplicate_job_id(self) -> None:
        job_id = str(uuid.uuid4())
        self.w.enqueue(self.type, {}, job_id=job_id)
        with self.assertRaises(DuplicateJobId) as cm:
            self.w.enqueue(self.type, {}, job_id=job_id)
        self.check(cm.exception, DuplicateJobId, 409, "duplicate_job_id")

    def test_413_payload_too_large(self) -> None:
        for size in (MAX_BODY + 100, 4 * 1024 * 1024):  # just over, and far over the limit
            with self.assertRaises(PayloadTooLarge) as cm:
                self.w.enqueue(self.type, {"blob": "x" * size})
            self.check(cm.exception, PayloadTooLarge, 413, "payload_too_large")
        self.assertEqual(self.w.enqueue(self.type, {})["status"], "queued")  # the client goes on

    def test_transport_error_when_nothing_listens(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with Client(f"http://127.0.0.1:{port}", ADMIN, retries=1, retry_backoff=0.01) as c:
            with self.assertRaises(TransportError) as cm:
                c.get(str(uuid.uuid4()))
        self.assertIsNone(cm.exception.status)
        self.assertEqual(cm.exception.code, "connection_error")
