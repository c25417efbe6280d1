"""Users, roles and API tokens in the store: the functions the web UI, the API and
``headwater users`` share.

Passwords are kept as werkzeug salted hashes (scrypt/pbkdf2). API tokens are random 256-bit
secrets; only their SHA-256 is stored (a token is unguessable, so a slow hash adds nothing), and
the secret itself is shown once, when it is made. Every function takes the session explicitly;
the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from enum import IntEnum

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from scheduler.errors import HeadwaterError, NotFound
from scheduler.store.models import ApiToken, User

TOKEN_PREFIX = "hw_"

# A hash to check against when the user does not exist, so that a wrong username takes as long
# as a wrong password (no user enumeration by timing).
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class Role(IntEnum):
    """What a user may do; each role may do everything the roles below it may."""

    VIEWER = 1    # look at everything except secrets, users and the audit log
    OPERATOR = 2  # trigger, clear, mark, pause, send signals, compensate; variables and pools
    ADMIN = 3     # connections, users, audit log

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise UserError(f"unknown role {name!r}; use one of admin, operator, viewer") from None


class UserError(HeadwaterError):
    """A user or token cannot be created or used as asked."""


def generate_password() -> str:
    """A random password of 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def create_user(session: Session, username: str, password: str, role: Role | str, *,
                now: datetime) -> User:
    """Add a user. Raises :class:`UserError` when the name is taken or empty, or the password
    shorter than 8 characters."""
    username = username.strip()
    if not username or len(username) > 250:
        raise UserError("a username must have 1 to 250 characters")
    if len(password) < 8:
        raise UserError("a password must have at least 8 characters")
    role = role if isinstance(role, Role) else Role.parse(role)
    user = User(username=username, password_hash=generate_password_hash(password),
                role=role.label, active=True, created_at=now)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise UserError(f"a user named {username!r} exists already; "
                        "`headwater users delete` removes it") from None
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def get_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user {username!r}; `headwater users list` shows the users")
    return user


def delete_user(session: Session, username: str) -> None:
    """Remove a user and its API tokens. Raises NotFound for an unknown name."""
    user = get_user(session, username)
    for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
        session.delete(token)
    session.delete(user)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (in constant-ish time)."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str, *, now: datetime) -> str:
    """Make an API token for ``user`` and return its secret (shown once; only a hash is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=name[:250] or "token",
                         token_hash=_token_hash(token), created_at=now))
    return token


def user_for_token(session: Session, token: str, *, now: datetime | None = None) -> User | None:
    """The active user owning ``token``, else None. Records when the token was last used
    (only when ``now`` is given and the session may write)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = _token_hash(token)
    row = session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == digest)).first()
    if row is None:
        return None
    api_token, user = row
    if not hmac.compare_digest(api_token.token_hash, digest) or not user.active:
        return None
    if now is not None:
        api_token.last_used_at = now
    return user
