"""wp-lite client and worker library (standard library only).

::

    from wp_lite import Client, Worker, RetryableError

    client = Client("http://127.0.0.1:8000", token)
    job = client.enqueue("email.send", {"to": "a@example.com"}, idempotency_key="welcome-42")

    worker = Worker(client, concurrency=4)

    @worker.handler("email.send")
    def send(job):
        ...
        return {"sent": True}

    worker.run()
"""

import logging as _logging

from ._version import __version__
from .client import DEFAULT_URL, AckItem, Client, Job, JobPage
from .errors import (
    Conflict,
    CsrfFailed,
    DuplicateJobId,
    Forbidden,
    IdempotencyConflict,
    InvalidPayload,
    InvalidStatus,
    JobCanceled,
    JobNotFound,
    JobNotLeased,
    LeaseLost,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryableError,
    ServerError,
    Timeout,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WpLiteError,
    error_from_item,
)
from .worker import Finished, Handler, LeasedJob, Worker, current_job

# A library logs, the application decides where it goes (logging.basicConfig, ...).
_logging.getLogger("wp_lite").addHandler(_logging.NullHandler())

__all__ = [
    "__version__",
    "DEFAULT_URL",
    "AckItem",
    "Client",
    "Job",
    "JobPage",
    "Worker",
    "LeasedJob",
    "Handler",
    "Finished",
    "current_job",
    "RetryableError",
    "WpLiteError",
    "TransportError",
    "Timeout",
    "InvalidPayload",
    "Unauthorized",
    "Forbidden",
    "CsrfFailed",
    "NotFound",
    "JobNotFound",
    "MethodNotAllowed",
    "Conflict",
    "JobNotLeased",
    "LeaseLost",
    "JobCanceled",
    "InvalidStatus",
    "IdempotencyConflict",
    "DuplicateJobId",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "Unavailable",
    "ServerError",
    "error_from_item",
]
