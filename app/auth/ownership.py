"""Which batches a caller may see, and whose a new batch is.

Another owner's batch answers 404 exactly like a batch that does not exist (same exception, same
body): a 403 would confirm that the id exists. Batches stored before keys existed have no owner and
are visible to admins only (the local owner is an admin).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.auth.problems import Forbidden
from app.errors import NotFound
from app.models import Batch


def visible_owner_filter(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause for queries over ``Batch``: admins see all, others their owner's batches."""
    if principal.is_admin:
        return true()
    return Batch.owner == principal.owner


def can_see(principal: Principal, owner: str | None) -> bool:
    return principal.is_admin or (owner is not None and owner == principal.owner)


def visible_batch(session: Session, principal: Principal, batch_id: str) -> Batch:
    """The batch, or the same NotFound a missing id raises."""
    batch = session.get(Batch, batch_id)
    if batch is None or not can_see(principal, batch.owner):
        raise NotFound(f"batch {batch_id!r}")
    return batch


def owner_for_new_batch(principal: Principal, requested: str | None = None) -> str:
    """The owner stored on a new batch: the key's owner. Admins (and the local owner) may name
    another owner in the body, e.g. to submit on a student's behalf; anyone else naming a different
    owner is refused rather than silently re-labelled."""
    if requested is None or requested == principal.owner:
        return principal.owner
    if principal.is_admin:
        return requested
    raise Forbidden(
        f"owner: this key belongs to {principal.owner!r} and cannot submit for {requested!r}; "
        "omit `owner` or use an admin key"
    )


def owner_scoped_idempotency_key(owner: str, client_key: str) -> str:
    """The stored form of a client's Idempotency-Key: one owner's key can neither replay nor block
    another owner's batch. A fixed-length digest also fits the 128-character column whatever the
    client sent."""
    return hashlib.sha256(f"{owner}\x00{client_key}".encode()).hexdigest()
