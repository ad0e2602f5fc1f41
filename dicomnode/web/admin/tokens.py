"""API tokens: create one (shown once), list, revoke, and check a presented token.

A token is ``dn_`` plus 32 random bytes in URL-safe base64 (256 bits). Only its sha256 is
stored: a salted slow hash (scrypt, pbkdf2) protects guessable *passwords*; a 256-bit random
secret cannot be guessed from its sha256, and an unsalted digest can be looked up by index, so
checking a request costs one indexed query instead of a key derivation per call.

Token changes are written to the audit log in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dicomnode.db.models import ApiToken
from dicomnode.provenance import audit

__all__ = ["TokenExists", "TokenInfo", "TokenNotFound", "authenticate", "create_token", "list_tokens", "revoke_token"]

_PREFIX = "dn_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class TokenExists(ValueError):
    """A token of that name exists already (revoked tokens keep their names)."""


class TokenNotFound(LookupError):
    """No token of that name."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is known of a token, never its secret."""

    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(name=row.name, created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(*, session: Session, name: str, actor: str) -> tuple[TokenInfo, str]:
    """Make a token named ``name``; returns it with the secret, which is not stored and not shown again.

    Raises
    ------
    ValueError
        When the name is not 1-64 letters, digits and ``.``, ``_``, ``@``, ``-``.
    TokenExists
        When a token of that name exists, revoked or not.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"a token name is 1-64 letters, digits, '.', '_', '@' or '-' (e.g. ci-bot), got {name!r}")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenExists(f"a token named {name!r} exists already (revoked tokens keep their names)")
    secret = _PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_sha256=_digest(secret))
    session.add(row)
    session.flush()
    session.refresh(row)
    audit.record(session=session, actor=actor, action="token.create", target=f"token:{name}")
    return _info(row), secret


def list_tokens(*, session: Session) -> list[TokenInfo]:
    """Every token, revoked ones included, by name."""
    return [_info(row) for row in session.scalars(select(ApiToken).order_by(ApiToken.name)).all()]


def revoke_token(*, session: Session, name: str, actor: str, reason: str = "") -> TokenInfo:
    """Revoke a token: it stops working at once. Revoking a revoked token changes nothing.

    Raises
    ------
    TokenNotFound
        When no token has that name.
    """
    row = session.scalars(select(ApiToken).where(ApiToken.name == name).with_for_update()).one_or_none()
    if row is None:
        raise TokenNotFound(f"no token named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = func.now()
        session.flush()
        session.refresh(row)
        audit.record(session=session, actor=actor, action="token.revoke", target=f"token:{name}", reason=reason)
    return _info(row)


def authenticate(*, session: Session, token: str) -> str | None:
    """The name of the active token ``token``, noting its use (the caller commits); None if not valid."""
    if not token.startswith(_PREFIX) or len(token) > 200:
        return None
    name = session.scalar(
        update(ApiToken)
        .where(ApiToken.token_sha256 == _digest(token), ApiToken.revoked_at.is_(None))
        .values(last_used_at=func.now())
        .returning(ApiToken.name)
    )
    return name
