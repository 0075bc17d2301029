"""Opaque, signed page tokens for the batch listing.

A token names the last entry of a page by (created_at, id) and the filters it was issued for; the
HMAC makes it impossible to forge a position or carry a cursor over to other filters (e.g. another
owner's batches)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from app.errors import InputError
from app.settings import Settings


@dataclass(frozen=True)
class Position:
    created_at: datetime
    batch_id: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _persisted_secret(path: Path) -> bytes:
    """A random key kept next to the embedded database, so every API process on that data dir
    accepts the others' cursors and a restart does not invalidate them."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def secret_of(settings: Settings) -> bytes:
    if settings.cursor_secret is not None:
        return settings.cursor_secret.get_secret_value().encode()
    return _persisted_secret(settings.data_dir / "cursor_secret")


def _mac(secret: bytes, payload: bytes) -> str:
    return _b64(hmac.new(secret, payload, hashlib.sha256).digest()[:16])


def encode(position: Position, scope: str, secret: bytes) -> str:
    payload = json.dumps(
        {"t": position.created_at.isoformat(), "id": position.batch_id, "s": scope}, separators=(",", ":")
    ).encode()
    return f"{_b64(payload)}.{_mac(secret, payload)}"


def decode(token: str, scope: str, secret: bytes) -> Position:
    """The position a token names; 400 naming ``cursor`` when it is malformed, forged or was issued
    for other filters."""

    def bad(why: str) -> InputError:
        return InputError(
            ["query", "cursor"],
            f"{why}; pass the `next` value of the previous page unchanged "
            "with the same filters, or omit `cursor` to start from the newest batch",
            status_code=400,
            kind="bad_cursor",
        )

    body, _, mac = token.partition(".")
    try:
        payload = _unb64(body)
    except (binascii.Error, ValueError):
        raise bad("cursor is not a token this service issued") from None
    if not mac or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise bad("cursor is not a token this service issued")
    data = json.loads(payload)
    if data.get("s") != scope:
        raise bad("cursor was issued for other filters")
    return Position(datetime.fromisoformat(data["t"]), str(data["id"]))
