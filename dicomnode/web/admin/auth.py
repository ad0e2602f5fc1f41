"""The admin API's authentication: ``Authorization: Bearer <token>`` checked against ``api_token``.

A missing, unknown or revoked token gets 401 with a ``WWW-Authenticate`` challenge and a problem
body. The check runs in a short session of its own (it commits the token's ``last_used_at``), so
a handler's transaction never carries it.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicomnode.web.admin import tokens
from dicomnode.web.deps import ServicesDep
from dicomnode.web.problem import Problem

__all__ = ["AdminUser", "require_token"]

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="an API token from `dicomnode tokens create --name NAME`")


def _refuse(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="dicomnode-admin"'})


def require_token(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the token the request carries, or 401."""
    if credentials is None:
        raise _refuse("an API token is required (Authorization: Bearer <token>; see `dicomnode tokens create`)")
    with services.sessions() as session:
        name = tokens.authenticate(session=session, token=credentials.credentials)
        session.commit()
    if name is None:
        logger.warning("api token refused", extra={"peer": request.client.host if request.client else ""})
        raise _refuse("the API token is not valid or was revoked")
    return name


#: The name of the token that authenticated the request: the author of any change it makes.
AdminUser = Annotated[str, Depends(require_token)]
