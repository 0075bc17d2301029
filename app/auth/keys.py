"""Creating, verifying, listing and revoking API keys.

A key reads ``far_<8 hex>_<secret>``. The first 12 characters (the prefix) are stored in clear so a
request finds its row by index; the row holds HMAC-SHA256(pepper, key), never the key. The pepper is a
server secret kept outside the database, so a leaked database dump alone cannot verify guesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.auth.models import ApiKey
from app.auth.principal import Principal, Scope
from app.auth.problems import Unauthorized
from app.models import utcnow
from app.settings import Settings

KEY_PREFIX = "far_"
PREFIX_LEN = len(KEY_PREFIX) + 8
MIN_PEPPER_CHARS = 32
PEPPER_FILE = "auth_secret"
_PREFIX_RE = re.compile(r"^far_[0-9a-f]{8}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_SCOPES = (Scope.READ, Scope.SUBMIT)
_SCOPE_VALUES = frozenset(s.value for s in Scope)


def load_pepper(settings: Settings) -> bytes:
    """The configured ``auth_secret``, else the one generated once into ``<data_dir>/auth_secret``."""
    if settings.auth_secret is not None:
        value = settings.auth_secret.get_secret_value()
        if len(value) < MIN_PEPPER_CHARS:
            raise ValueError(
                f"auth_secret must be at least {MIN_PEPPER_CHARS} characters; "
                'generate one with `python -c "import secrets; print(secrets.token_urlsafe(48))"`'
            )
        return value.encode()
    path = settings.data_dir / PEPPER_FILE
    if not path.exists():
        _create_secret_file(path)
    value = path.read_text().strip()
    if len(value) < MIN_PEPPER_CHARS:
        raise ValueError(
            f"{path} holds no usable secret; delete it to regenerate one (existing keys stop working)"
        )
    return value.encode()


def _create_secret_file(path: Path) -> None:
    # Written to a 0600 temp file then hard-linked into place: the name appears complete or not at
    # all, and when two processes race, the second link fails and both read the winner's secret.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth_secret.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def hash_key(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w``."""
    match = _DURATION_RE.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}; use a positive number with s, m, h, d or w, e.g. 30d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def normalize_prefix(text: str) -> str:
    text = text.strip()
    if not text.startswith(KEY_PREFIX):
        text = KEY_PREFIX + text
    text = text[:PREFIX_LEN]
    if not _PREFIX_RE.match(text):
        raise ValueError(f"{text!r} is not a key prefix; it looks like far_0123abcd")
    return text


@dataclass(frozen=True)
class CreatedKey:
    """What `keys create` shows once. ``secret`` is the whole key the client sends."""

    id: int
    prefix: str
    owner: str
    scopes: tuple[Scope, ...]
    expires_at: datetime | None
    secret: str

    def __repr__(self) -> str:  # keep the secret out of tracebacks and debug logs
        return f"CreatedKey(prefix={self.prefix!r}, owner={self.owner!r}, scopes={self.scopes!r})"


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as `keys list` shows it: everything but the secret, which is not stored."""

    prefix: str
    owner: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_key(
    session: Session,
    pepper: bytes,
    owner: str,
    scopes: Iterable[Scope] = DEFAULT_SCOPES,
    name: str | None = None,
    expires_in: timedelta | None = None,
) -> CreatedKey:
    owner = owner.strip()
    if not owner or len(owner) > 128:
        raise ValueError("owner must be 1 to 128 characters")
    if name is not None and len(name) > 128:
        raise ValueError("name must be at most 128 characters")
    chosen = tuple(sorted(set(scopes)))
    if not chosen:
        raise ValueError("a key needs at least one scope: read, submit or admin")
    now = utcnow()
    while True:
        prefix = KEY_PREFIX + secrets.token_hex(4)
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        owner=owner,
        name=name,
        prefix=prefix,
        secret_hash=hash_key(pepper, secret),
        scopes=[s.value for s in chosen],
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    session.add(row)
    session.flush()
    return CreatedKey(row.id, prefix, owner, chosen, row.expires_at, secret)


def list_keys(session: Session, owner: str | None = None) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if owner is not None:
        query = query.where(ApiKey.owner == owner)
    return [
        KeyInfo(
            prefix=k.prefix,
            owner=k.owner,
            name=k.name,
            scopes=tuple(k.scopes),
            created_at=_aware(k.created_at),
            expires_at=_aware_or_none(k.expires_at),
            last_used_at=_aware_or_none(k.last_used_at),
            revoked_at=_aware_or_none(k.revoked_at),
        )
        for k in session.scalars(query)
    ]


def revoke_key(session: Session, prefix: str) -> bool | None:
    """True: revoked now; False: it already was; None: no such key."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == normalize_prefix(prefix)))
    if row is None:
        return None
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True


INVALID_KEY = (
    "invalid API key; send `Authorization: Bearer far_...` with a key from `fastarchrank keys create`"
)


def verify_key(
    session: Session, pepper: bytes, presented: str, last_used_resolution_s: float = 60.0
) -> Principal:
    """The principal of a presented key, or Unauthorized. Unknown prefix and wrong secret answer the
    same, so a caller cannot learn which prefixes exist."""
    presented = presented.strip()
    digest = hash_key(pepper, presented)  # computed for every request: no shortcut timing for bad prefixes
    if len(presented) <= PREFIX_LEN + 1 or presented[PREFIX_LEN] != "_":
        raise Unauthorized(INVALID_KEY)
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LEN]))
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        raise Unauthorized(INVALID_KEY)
    now = utcnow()
    if row.revoked_at is not None:
        raise Unauthorized(f"API key {row.prefix} was revoked; ask for a new one")
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        raise Unauthorized(f"API key {row.prefix} expired; ask for a new one")
    _touch(session, row, now, last_used_resolution_s)
    return Principal(
        owner=row.owner,
        scopes=frozenset(Scope(s) for s in row.scopes if s in _SCOPE_VALUES),
        key_id=row.id,
        key_prefix=row.prefix,
    )


def _touch(session: Session, row: ApiKey, now: datetime, resolution_s: float) -> None:
    # The WHERE clause makes concurrent API processes write at most once per window, and a request
    # inside the window costs no write at all.
    last = _aware_or_none(row.last_used_at)
    if last is not None and (now - last).total_seconds() < resolution_s:
        return
    cutoff = now - timedelta(seconds=resolution_s)
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == row.id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= cutoff))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def scopes_from(names: Sequence[str]) -> tuple[Scope, ...]:
    try:
        return tuple(Scope(n) for n in names)
    except ValueError:
        raise ValueError(f"unknown scope in {list(names)}; choose from {[s.value for s in Scope]}") from None


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything this service writes is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)
