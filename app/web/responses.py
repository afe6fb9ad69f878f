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


async def verification_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VerificationError)
    headers = {"Retry-After": "30"} if exc.status == 503 else None
    return error_response(exc.status, exc.code, exc.detail, headers)


async def ingest_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IngestError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueUnavailable) else None
    return error_response(exc.status, exc.code, exc.detail, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", "unexpected error; it has been logged")


exception_handlers = {
    VerificationError: verification_error,
    IngestError: ingest_error,
}
