"""Authentication of DICOMweb requests: none, bearer tokens or HTTP basic (``web.auth``).

Secrets are compared in constant time. A refused request gets 401 with a
``WWW-Authenticate`` challenge; CORS preflight requests never reach this check.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from dicomnode.config import WebAuth, WebSettings
from dicomnode.web.deps import SettingsDep
from dicomnode.web.problem import Problem

logger = logging.getLogger(__name__)

_REALM = "dicomnode"


def _refuse(scheme: str, detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": f'{scheme} realm="{_REALM}"'})


def _equal(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


_bearer = HTTPBearer(auto_error=False, description="a token from web.bearer_tokens")
_basic = HTTPBasic(auto_error=False, realm=_REALM, description="a user and password from web.basic_users")


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


async def require_bearer(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept a request with ``Authorization: Bearer <one of web.bearer_tokens>``, else 401."""
    if credentials is None:
        raise _refuse("Bearer", "a bearer token is required (Authorization: Bearer <token>)")
    # Compare with every token, so the time taken does not tell which one nearly matched.
    matches = [_equal(credentials.credentials, t.get_secret_value()) for t in settings.web.bearer_tokens]
    if not any(matches):
        logger.warning("bearer token refused", extra={"peer": _peer(request)})
        raise _refuse("Bearer", "the bearer token is not valid")


async def require_basic(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> None:
    """Accept a request with HTTP basic credentials from ``web.basic_users``, else 401."""
    if credentials is None:
        raise _refuse("Basic", "a user name and password are required (HTTP basic)")
    expected = settings.web.basic_users.get(credentials.username)
    # Compare even for an unknown user, so timing does not reveal which users exist.
    secret = expected.get_secret_value() if expected is not None else secrets.token_hex(16)
    if not _equal(credentials.password, secret) or expected is None:
        logger.warning("basic credentials refused", extra={"peer": _peer(request)})
        raise _refuse("Basic", "the user name or password is not valid")


def build(settings: WebSettings) -> Callable[..., Awaitable[None]] | None:
    """The dependency that checks credentials for ``settings.auth``; None when auth is off."""
    return {WebAuth.NONE: None, WebAuth.BEARER: require_bearer, WebAuth.BASIC: require_basic}[settings.auth]
