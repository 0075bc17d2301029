"""Who is calling: the typed object every protected route can depend on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)

# The owner of requests the loopback rule (or auth="off") lets in without a key.
LOCAL_OWNER = "local"


@dataclass(frozen=True)
class Principal:
    owner: str
    scopes: frozenset[Scope]
    key_id: int | None = None  # None: no key was presented (local owner)
    key_prefix: str | None = None

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def allows(self, scope: Scope) -> bool:
        # admin implies every other scope; read and submit are independent of each other
        return scope in self.scopes or self.is_admin


LOCAL_PRINCIPAL = Principal(owner=LOCAL_OWNER, scopes=ALL_SCOPES)
