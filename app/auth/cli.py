"""``fastarchrank keys create|list|revoke``: API keys, managed on the server host against its database.

The key is printed once, alone on stdout (``KEY=$(fastarchrank keys create --owner ana)``); what
else is said goes to stderr. Nothing here logs a key.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.auth.keys import (
    DEFAULT_SCOPES,
    create_key,
    list_keys,
    load_pepper,
    parse_duration,
    revoke_key,
    scopes_from,
)
from app.settings import Settings


def add_keys_commands(subparsers: Any) -> None:
    """Add ``keys`` with its sub-commands to the parser of ``fastarchrank``."""
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys (see docs/security.md)")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    c = sub.add_parser("create", help="create a key and print it once")
    c.add_argument("--owner", required=True, help="who the key acts for; its batches belong to this owner")
    c.add_argument("--name", default=None, help="a note for `keys list`, e.g. the machine using it")
    c.add_argument(
        "--scope",
        action="append",
        choices=["read", "submit", "admin"],
        default=None,
        help="repeatable; default: read and submit. admin sees every owner's batches",
    )
    c.add_argument("--expires-in", default=None, help="lifetime such as 30d, 12h, 90m, 2w; default: none")
    c.set_defaults(func=cmd_keys_create)

    ls = sub.add_parser("list", help="list keys (prefix, owner, scopes, dates); never the secret")
    ls.add_argument("--owner", default=None, help="only this owner's keys")
    ls.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    ls.set_defaults(func=cmd_keys_list)

    r = sub.add_parser("revoke", help="revoke a key by its prefix (far_xxxxxxxx); takes effect at once")
    r.add_argument("prefix")
    r.set_defaults(func=cmd_keys_revoke)


class NoServiceDatabase(Exception):
    """`keys list|revoke` pointed at an embedded database that does not exist yet."""


def _context(*, may_create: bool) -> tuple[Settings, sessionmaker[Session]]:
    """The server's database, migrated. ``keys`` does not talk to the API: it works on the database
    this host's settings name, so it says which, and ``list``/``revoke`` refuse to invent an empty
    embedded one (a wrong FASTARCHRANK_DATA_DIR would otherwise answer "no keys")."""
    import logging

    from sqlalchemy.engine import make_url

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-step INFO lines are noise here
    from app.db import get_sessionmaker
    from app.migrate import upgrade
    from app.settings import get_settings

    settings = get_settings()
    url = make_url(settings.effective_database_url)
    shown = url.render_as_string(hide_password=True)
    on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if on_disk and not Path(str(url.database)).exists():
        if not may_create:
            raise NoServiceDatabase(
                f"no service database at {url.database}: `keys` works on the server's database "
                "directly (it does not use FASTARCHRANK_URL), so run it on the server host with the "
                "server's FASTARCHRANK_DATA_DIR or FASTARCHRANK_DATABASE_URL"
            )
        print(f"keys: creating the service database {shown} (no `serve` has run here yet)", file=sys.stderr)
    else:
        print(f"keys: database {shown}", file=sys.stderr)
    upgrade(settings.effective_database_url)  # `keys create` may come before the first `serve`
    return settings, get_sessionmaker()


def cmd_keys_create(args: argparse.Namespace) -> int:
    try:
        scopes = scopes_from(args.scope) if args.scope else DEFAULT_SCOPES
        expires_in = parse_duration(args.expires_in) if args.expires_in else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings, sessions = _context(may_create=True)
    try:
        with sessions.begin() as session:
            created = create_key(session, load_pepper(settings), args.owner, scopes, args.name, expires_in)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    expires = _when(created.expires_at) if created.expires_at else "never"
    print(
        f"created {created.prefix} for owner {created.owner!r} "
        f"(scopes: {', '.join(created.scopes)}; expires: {expires}). "
        "The key follows; it is shown only this once:",
        file=sys.stderr,
    )
    print(created.secret, flush=True)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    try:
        _, sessions = _context(may_create=False)
    except NoServiceDatabase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with sessions.begin() as session:
        keys = list_keys(session, args.owner)
    rows = [
        {
            "prefix": k.prefix,
            "owner": k.owner,
            "name": k.name or "",
            "scopes": ",".join(k.scopes),
            "created": _when(k.created_at),
            "expires": _when(k.expires_at),
            "last_used": _when(k.last_used_at),
            "revoked": _when(k.revoked_at),
        }
        for k in keys
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no keys", file=sys.stderr)
        return 0
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        _, sessions = _context(may_create=False)
    except NoServiceDatabase as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with sessions.begin() as session:
            outcome = revoke_key(session, args.prefix)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if outcome is None:
        print(f"error: no key with prefix {args.prefix!r}; see `fastarchrank keys list`", file=sys.stderr)
        return 1
    print(f"{'revoked' if outcome else 'already revoked'}: {args.prefix}", file=sys.stderr)
    return 0


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"
