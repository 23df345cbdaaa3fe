"""Typed exceptions, one per error code of the wp-lite API.

Every error answer of the server has one shape::

    {"detail": "<code>", "error": {"code": "<code>", "message": "...", "fields": [...]}}

:func:`error_from_response` turns it into the most specific class below (by ``code``,
then by HTTP status), so callers can write ``except LeaseLost:`` or ``except Conflict:``.
Problems that never reached an answer (refused connection, reset, timeout) are
:class:`TransportError` (``status`` is ``None``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type

__all__ = [
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
    "RetryableError",
    "error_from_response",
]


class WpLiteError(Exception):
    """Base of every error this package raises for a call to the server.

    ``status`` is the HTTP status (``None`` when no answer arrived), ``code`` the
    server's error code (``"lease_lost"``, ...), ``message`` its human text and
    ``fields`` the per-field validation errors (``[{"field", "message"}]``, often empty).
    """

    status: Optional[int]
    code: str
    message: str
    fields: List[Dict[str, Any]]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: str = "error",
        fields: Optional[List[Dict[str, Any]]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields or [])
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.status is None:
            return f"{self.code}: {self.message}"
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class TransportError(WpLiteError):
    """The request got no answer: connection refused or reset, DNS failure, ..."""

    def __init__(self, message: str, *, code: str = "connection_error") -> None:
        super().__init__(message, status=None, code=code)


class Timeout(TransportError):
    """No answer within the call's timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


class InvalidPayload(WpLiteError):
    """400 ``invalid_payload``: malformed or out-of-range input (see ``fields``)."""


class Unauthorized(WpLiteError):
    """401 ``unauthorized``: no token, or a wrong one."""


class Forbidden(WpLiteError):
    """403 ``forbidden``: authenticated but not allowed (a worker token on an admin route)."""


class CsrfFailed(Forbidden):
    """403 ``csrf_failed`` (browser sessions only; a token client never sees it)."""


class NotFound(WpLiteError):
    """404: an unknown route (``not_found``) or resource."""


class JobNotFound(NotFound):
    """404 ``job_not_found``."""


class MethodNotAllowed(WpLiteError):
    """405 ``method_not_allowed``."""


class Conflict(WpLiteError):
    """409: the resource's state does not allow the call."""


class JobNotLeased(Conflict):
    """409 ``job_not_leased``: not leased by this worker (also: finished twice)."""


class LeaseLost(Conflict):
    """409 ``lease_lost``: this lease expired, or the job was leased again since."""


class JobCanceled(Conflict):
    """409 ``job_canceled``: an admin canceled the job."""


class InvalidStatus(Conflict):
    """409 ``invalid_status``: e.g. retrying a job that is not failed or canceled."""


class IdempotencyConflict(Conflict):
    """409 ``idempotency_conflict``: the key was used for this type with another input."""


class DuplicateJobId(Conflict):
    """409 ``duplicate_job_id``: a job with the supplied ``job_id`` exists."""


class PayloadTooLarge(WpLiteError):
    """413 ``payload_too_large``: the body is over the server's ``--max-body-bytes``."""


class UnsupportedMediaType(WpLiteError):
    """415 ``unsupported_media_type``."""


class RateLimited(WpLiteError):
    """429 ``rate_limited``; ``retry_after`` holds the seconds to wait."""


class Unavailable(WpLiteError):
    """503 ``unavailable`` (a storage fault); ``retry_after`` holds the seconds to wait."""


class ServerError(WpLiteError):
    """A 5xx other than 503 (the server says a 500 is always a bug), or an answer that
    is not the documented error shape."""


class RetryableError(Exception):
    """Raise it from a worker handler to fail the job with ``retryable: true``.

    Any other exception fails the job for good. The message becomes the job's error.
    """

    def __init__(self, message: str = "retryable failure", details: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.details: Optional[Dict[str, Any]] = dict(details) if details is not None else None


_BY_CODE: Dict[str, Type[WpLiteError]] = {
    "invalid_payload": InvalidPayload,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "csrf_failed": CsrfFailed,
    "not_found": NotFound,
    "job_not_found": JobNotFound,
    "broadcast_not_found": NotFound,
    "user_not_found": NotFound,
    "method_not_allowed": MethodNotAllowed,
    "job_not_leased": JobNotLeased,
    "lease_lost": LeaseLost,
    "job_canceled": JobCanceled,
    "invalid_status": InvalidStatus,
    "idempotency_conflict": IdempotencyConflict,
    "duplicate_job_id": DuplicateJobId,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "rate_limited": RateLimited,
    "unavailable": Unavailable,
}

_BY_STATUS: Dict[int, Type[WpLiteError]] = {
    400: InvalidPayload,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: Unavailable,
}


def error_class(status: Optional[int], code: str) -> Type[WpLiteError]:
    """The exception class for an answer with this status and error code."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    if status is not None:
        cls = _BY_STATUS.get(status)
        if cls is not None:
            return cls
        if status >= 500:
            return ServerError
    return WpLiteError


def error_from_response(
    status: int, body: Any, retry_after: Optional[float] = None
) -> WpLiteError:
    """Builds the typed exception for an error answer (``body`` already decoded, or raw)."""
    code = ""
    message = ""
    fields: List[Dict[str, Any]] = []
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or "")
            message = str(err.get("message") or "")
            raw_fields = err.get("fields")
            if isinstance(raw_fields, list):
                fields = [f for f in raw_fields if isinstance(f, dict)]
        if not code and isinstance(body.get("detail"), str):
            code = body["detail"]
    if not code:
        code = "http_%d" % status
    if not message:
        message = body if isinstance(body, str) and body else "HTTP %d" % status
    cls = error_class(status, code)
    return cls(message, status=status, code=code, fields=fields, retry_after=retry_after)


def code_of(error: Mapping[str, Any]) -> str:
    """The code of an ``ack`` item's ``error`` object."""
    return str(error.get("code") or "")


_STATUS_OF: Dict[Type[WpLiteError], int] = {cls: status for status, cls in _BY_STATUS.items()}


def error_from_item(error: Mapping[str, Any]) -> WpLiteError:
    """The typed exception for a refused ``ack`` item (``{"code", "message"}``); its
    ``status`` is the one the single ``complete``/``fail`` call would have answered."""
    code = code_of(error)
    cls = error_class(None, code)
    status = next((s for c, s in _STATUS_OF.items() if issubclass(cls, c)), None)
    return cls(str(error.get("message") or code), status=status, code=code)
