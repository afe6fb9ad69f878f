"""Error bodies and the single mapping from the exception tree to HTTP statuses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import IngestError, QueueUnavailable, VerificationError


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error body shape: ``{"error": code, "detail": detail}``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def refusal_response(exc: VerificationError | IngestError) -> JSONResponse:
    """The answer to a refused request: its status, code and detail (``Retry-After`` on 503)."""
    if isinstance(exc, VerificationError):
        headers = {"Retry-After": "30"} if exc.status == 503 else None
    elif isinstance(exc, QueueUnavailable):
        headers = {"Retry-After": str(exc.retry_after)}
    else:
        headers = None
    return error_response(exc.status, exc.code, exc.detail, headers)


async def verification_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VerificationError)
    return refusal_response(exc)


async def ingest_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IngestError)
    return refusal_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def server_error_response() -> JSONResponse:
    return error_response(500, "internal_error", "unexpected error; it has been logged")


async def server_error(request: Request, exc: Exception) -> Response:
    return server_error_response()


exception_handlers = {
    VerificationError: verification_error,
    IngestError: ingest_error,
}
