"""Errors the simulated API answers with, in Confluence's v2 envelope.

``{"errors": [{"status": 409, "code": "CONFLICT", "title": "...", "detail": null}]}``
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error response of the product API."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        super().__init__(f"{status} {code}: {title}")

    def envelope(self) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "status": self.status,
                    "code": self.code,
                    "title": self.title,
                    "detail": self.detail,
                }
            ]
        }


def bad_param(name: str, detail: str | None = None) -> ApiError:
    return ApiError(
        400,
        "INVALID_REQUEST_PARAMETER",
        f"Provided value for '{name}' is not the correct type or out of range.",
        detail,
    )


def bad_body(title: str) -> ApiError:
    return ApiError(400, "INVALID_MESSAGE", title)


def not_found(what: str = "content") -> ApiError:
    return ApiError(
        404, "NOT_FOUND", f"Cannot find {what} or you do not have permission to view it."
    )


def forbidden(title: str = "You do not have permission to perform this action.") -> ApiError:
    return ApiError(403, "FORBIDDEN", title)


def not_permitted(title: str = "You do not have permission to perform this action.") -> ApiError:
    """A write to something the caller may view but not change: the v2 spec answers 404 for
    it (its 404 descriptions name "the needed permissions to update/delete/create"), not 403."""
    return ApiError(404, "NOT_FOUND", title)


def version_conflict(
    kind: str, current: int, provided: int | None, *, first_publish: bool = False
) -> ApiError:
    shown = "" if provided is None else str(provided)
    if first_publish:
        # A draft never published: its first version is 1 (the exact text is not published).
        return ApiError(
            409,
            "CONFLICT",
            f"Version number must be 1 when publishing a {kind} for the first time. "
            f"Provided version: [{shown}]",
        )
    return ApiError(
        409,
        "CONFLICT",
        f"Version must be incremented when updating a {kind}. "
        f"Current Version: [{current}]. Provided version: [{shown}]",
    )


# The v1 API's exception names, by status, as its error messages start with them.
_V1_EXCEPTIONS = {
    400: "BadRequestException",
    401: "AuthenticationRequiredException",
    403: "PermissionException",
    404: "NotFoundException",
    409: "ConflictException",
}


class V1ApiError(ApiError):
    """An error of a v1 route (``/wiki/rest/api``): ``{"statusCode", "data", "message"}``."""

    def envelope(self) -> dict[str, Any]:
        name = _V1_EXCEPTIONS.get(self.status, "ServiceException")
        text = f"{self.title} {self.detail}" if self.detail else self.title
        return {
            "statusCode": self.status,
            "data": {"authorized": self.status not in (401, 403), "valid": False,
                     "errors": [], "successful": False},
            "message": f"com.atlassian.confluence.api.service.exceptions.{name}: {text}",
        }  # fmt: skip
