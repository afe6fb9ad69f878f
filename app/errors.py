"""The one exception tree of Confluence Reactor.

::

    ReactorError
    ├── ConfigError                 settings invalid or a dependency missing at start-up
    ├── DecryptionError             (app.crypto) a stored secret matches no configured key
    ├── VerificationError           an incoming request is not authentic       -> 401
    │   ├── MalformedRequest        not a request we can parse at all          -> 400
    │   ├── ForgeTokenError         (app.atlassian.forge_token) Forge token refused -> 401
    │   ├── TokenRejected           (app.atlassian.token_errors) Connect JWT refused -> 401;
    │   │                           one subclass per ``code``: expired, bad_signature,
    │   │                           qsh_mismatch, unknown_tenant, bad_key_id (install_token) ...
    │   └── UpstreamUnavailable     a key/JWKS server is down or slow          -> 503
    ├── IngestError                 the request is authentic but unusable
    │   ├── PayloadTooLarge                                                    -> 413
    │   ├── UnsupportedMediaType                                               -> 415
    │   ├── InvalidPayload                                                     -> 400
    │   └── QueueUnavailable        Redis down or too slow; nothing acknowledged -> 503
    ├── JobError                    how a job ends when it does not succeed
    │   ├── Defer                   wait (budget, token): not an attempt
    │   ├── PermanentFailure        retrying cannot help: dead-letter at once
    │   └── TransientFailure        retry with backoff, then dead-letter
    └── ConfluenceError             (app.confluence.errors) a Confluence call failed;
        │                           ``permanent`` / ``is_permanent(exc)`` says dead-letter or retry
        ├── BadRequest 400, Unauthorized 401, Forbidden 403, NotFound 404,
        │   ClientError (other 4xx), NotEditable, SelectionNotFound      permanent
        ├── Conflict 409            (current/provided version)  update_page re-reads; transient
        ├── RateLimited 429         ``delay`` from Retry-After                  -> Defer
        └── ServerError 5xx, TransportError (timeout, connection), InvalidResponse  transient

HTTP statuses are mapped from this tree in exactly one place (``app.web.responses``); job
behaviour (retry, defer, dead-letter) in exactly one place (``workers.retry.decide``).
"""

from __future__ import annotations

from collections.abc import Sequence


class ReactorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ReactorError):
    """Invalid configuration; ``problems`` holds one human-readable line per problem."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class VerificationError(ReactorError):
    """An incoming request failed authentication. ``code`` is a stable machine-readable reason."""

    status = 401

    def __init__(self, code: str, detail: str, *, tenant: str | None = None) -> None:
        self.code = code
        self.detail = detail
        self.tenant = tenant
        super().__init__(f"{code}: {detail}")


class MalformedRequest(VerificationError):
    status = 400


class UpstreamUnavailable(VerificationError):
    """A key server we depend on for verification is unavailable: the caller should retry."""

    status = 503


class IngestError(ReactorError):
    status = 400
    code = "invalid_request"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class PayloadTooLarge(IngestError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(IngestError):
    status = 415
    code = "unsupported_media_type"


class InvalidPayload(IngestError):
    status = 400
    code = "invalid_payload"


class QueueUnavailable(IngestError):
    status = 503
    code = "queue_unavailable"
    retry_after = 5


class JobError(ReactorError):
    """Raised inside jobs to tell the job layer how to continue."""


class Defer(JobError):
    """Wait ``delay`` seconds and try again; does not count as an attempt.

    ``give_up_after``: once the event was received longer ago than this (seconds), waiting
    ends and the event is dead-lettered with ``reason`` (a wait for something that may never
    come: a disabled site, a Forge token).
    """

    def __init__(self, delay: float, reason: str, *, give_up_after: float | None = None) -> None:
        self.delay = max(0.0, delay)
        self.reason = reason
        self.give_up_after = give_up_after
        super().__init__(f"deferred {self.delay:.1f}s: {reason}")


class PermanentFailure(JobError):
    """Retrying cannot succeed (content gone, permission denied, validation)."""


class TransientFailure(JobError):
    """May succeed later: retry with backoff."""
