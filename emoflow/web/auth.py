"""Bearer tokens (API) or the same token in an HttpOnly cookie (pages, <audio>/<video> sources)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stores.tokens import TokenRecord, verify_token

COOKIE = "emoflow_token"
_bearer = HTTPBearer(auto_error=False, description="a token from `emoflow tokens create`")


def current_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenRecord:
    secret = credentials.credentials if credentials else request.cookies.get(COOKIE)
    token = verify_token(request.app.state.store, secret) if secret else None
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid token is required: `emoflow tokens create --role viewer --name NAME`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


def writer(token: Annotated[TokenRecord, Depends(current_token)]) -> TokenRecord:
    """Submitting and editing need a submitter token; viewers may only read."""
    if not token.can_write:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"token {token.name!r} is a viewer: it cannot write")
    return token


Reader = Annotated[TokenRecord, Depends(current_token)]
Writer = Annotated[TokenRecord, Depends(writer)]
