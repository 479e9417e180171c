"""Bearer tokens: a random secret shown once, stored as its sha256, with a role and a name.

The name is the actor recorded in the audit trail for everything done with the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Session

from kernel.errors import InputError
from stores.schema import ApiToken, utcnow
from stores.store import ArtifactStore

ROLES = ("submitter", "viewer")
PREFIX = "emo_"  # makes leaked tokens easy to grep for
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def can_write(self) -> bool:
        return self.role == "submitter" and self.revoked_at is None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(store: ArtifactStore, name: str, role: str, actor: str) -> tuple[TokenRecord, str]:
    """A new token and its secret; the secret cannot be recovered later."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    if not _NAME.match(name):
        raise InputError(f"invalid token name {name!r}: use letters, digits, '.', '_', '@' or '-'")
    secret = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, secret_sha256=hash_secret(secret))
    try:
        with Session(store.engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
    except SAIntegrityError as exc:
        raise InputError(f"a token named {name!r} already exists") from exc
    store.record_event("token.create", actor, details={"name": name, "role": role})
    return _record(row), secret


def verify_token(store: ArtifactStore, secret: str) -> TokenRecord | None:
    """The live token with this secret, or None. Lookup is by hash, so timing reveals nothing useful."""
    with Session(store.engine) as session:
        row = session.scalars(
            select(ApiToken).where(
                ApiToken.secret_sha256 == hash_secret(secret), ApiToken.revoked_at.is_(None)
            )
        ).first()
        return _record(row) if row else None


def list_tokens(store: ArtifactStore) -> list[TokenRecord]:
    with Session(store.engine) as session:
        return [_record(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(store: ArtifactStore, name: str, actor: str) -> None:
    with Session(store.engine) as session, session.begin():
        row = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
        if row is None:
            raise InputError(f"no token named {name!r}")
        row.revoked_at = utcnow()
    store.record_event("token.revoke", actor, details={"name": name})


def _record(row: ApiToken) -> TokenRecord:
    return TokenRecord(
        id=row.id, name=row.name, role=row.role, created_at=row.created_at, revoked_at=row.revoked_at
    )
