"""Bearer tokens (API) or the same token in an HttpOnly cookie (pages, <audio>/<video> sources)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stores.tokens import TokenRecord, verify_token

COOKIE = "emoflow_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_bearer = HTTPBearer(auto_error=False, description="a token from `emoflow tokens create`")


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL or an Origin header; None for "null" or anything unparsable."""
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return None
    return (scheme, host, port) if scheme in DEFAULT_PORTS and host and port else None


def require_same_origin(request: Request) -> None:
    """Refuse a state-changing request the session cookie authenticates unless it comes from the
    inspector's own pages. SameSite=Strict is not enough: a page on another port of this host, or on a
    sibling subdomain, is the same *site*, so the browser sends the cookie along with its posts.
    Browsers send Origin on every POST; Referer is the fallback for the few that strip it."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    own = origin_of(str(request.base_url))
    if claimed is None or own is None or origin_of(claimed) != own:
        seen = f"from {claimed!r}" if claimed else "with neither an Origin nor a Referer header"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"cross-origin request refused: it carries the inspector's session cookie but comes {seen}, "
            f"not from the inspector's own pages ({str(request.base_url).rstrip('/')}); "
            "to call the API from elsewhere send the token as a bearer header instead",
        )


def current_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> TokenRecord:
    if credentials:
        secret: str | None = credentials.credentials  # a browser never adds this header by itself
    else:
        secret = request.cookies.get(COOKIE)
        if secret and request.method not in SAFE_METHODS:
            require_same_origin(request)
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
