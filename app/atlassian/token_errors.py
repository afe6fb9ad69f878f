"""Why a Connect token was refused: one :class:`TokenRejected` subclass per stable ``code``.

All are :class:`~app.errors.VerificationError` (401). Texts name the failed check, never the
token or a secret.
"""

from __future__ import annotations

from typing import ClassVar

from app.errors import VerificationError


class TokenRejected(VerificationError):
    """A Connect token failed verification; subclasses fix ``code``."""

    code_name: ClassVar[str] = "invalid_token"

    def __init__(self, detail: str, *, tenant: str | None = None) -> None:
        super().__init__(self.code_name, detail, tenant=tenant)


class MissingToken(TokenRejected):
    code_name = "missing_token"


class MalformedToken(TokenRejected):
    code_name = "malformed_token"


class TokenTooLarge(TokenRejected):
    code_name = "token_too_large"


class WrongAlgorithm(TokenRejected):
    code_name = "wrong_algorithm"


class BadSignature(TokenRejected):
    code_name = "bad_signature"


class InvalidClaims(TokenRejected):
    code_name = "invalid_claims"


class TokenExpired(TokenRejected):
    code_name = "expired"


class TokenNotYetValid(TokenRejected):
    code_name = "not_yet_valid"


class QshMismatch(TokenRejected):
    code_name = "qsh_mismatch"


class ContextQshNotAllowed(TokenRejected):
    code_name = "context_qsh_not_allowed"


class UnknownTenant(TokenRejected):
    code_name = "unknown_tenant"


class UninstalledTenant(TokenRejected):
    code_name = "uninstalled_tenant"


class DisabledTenant(TokenRejected):
    code_name = "disabled_tenant"
